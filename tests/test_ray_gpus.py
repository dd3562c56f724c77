"""Ray with fractional GPUs spreads the fits over every GPU of the cluster: a local head that declares two
GPUs (no real GPU needed: Ray only sets CUDA_VISIBLE_DEVICES) runs four tasks at once, two per GPU."""
import os
import time

import pytest

ray = pytest.importorskip("ray")

from dsr.pipelines.executors import ExecutorSettings, run_tasks  # noqa: E402


@pytest.fixture(scope="module")
def gpu_head():
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
             logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_fractional_gpus_fill_both_gpus(tmp_path, gpu_head):
    barrier = tmp_path / "barrier"
    barrier.mkdir()

    def task(job, device):  # held until all four run at once, so Ray must place them side by side
        (barrier / str(job)).touch()
        deadline = time.monotonic() + 120
        while len(os.listdir(barrier)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"status": "ok", "device": device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "together": len(os.listdir(barrier))}

    results = {}
    ex = ExecutorSettings(kind="ray", device="cuda", fits_per_gpu=2, ray_address=gpu_head)
    run_tasks(task, list(range(4)), ex, lambda i, r: results.__setitem__(i, r))
    assert sorted(results) == [0, 1, 2, 3] and all(r["together"] == 4 for r in results.values())
    assert {r["device"] for r in results.values()} == {"cuda"}
    visible = sorted(r["visible"] for r in results.values())
    assert visible == ["0", "0", "1", "1"]  # every GPU used, two fits on each

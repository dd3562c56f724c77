"""Load a script of ``benchmarks/`` as a module, for the tests that run benchmarks at smoke size."""
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_module(name: str, module_name: str | None = None):
    """``benchmarks/<name>.py`` imported as ``module_name`` (default ``bench_<name>``)."""
    spec = importlib.util.spec_from_file_location(module_name or f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

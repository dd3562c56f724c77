"""events.tsv → boxcar inputs sampled at the TR."""
import numpy as np
import pytest

from dsr.errors import InputError
from dsr.io.events import events_to_inputs


def test_boxcars(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    path.write_text("onset\tduration\ttrial_type\n2\t4\tgo\n9\t2\tstop\n13\t0\tgo\n")
    x, names = events_to_inputs(path, 8, 2.0)
    assert names == ["go", "stop"] and x.shape == (8, 2)
    assert np.allclose(x[:, 0], [0, 1, 1, 0, 0, 0, 1, 0])  # block 2-6 s, impulse at 13 s
    assert np.allclose(x[:, 1], [0, 0, 0, 0, 0.5, 0.5, 0, 0])  # 9-11 s straddles two volumes
    only, names = events_to_inputs(path, 8, 2.0, conditions=["stop"])
    assert names == ["stop"] and np.allclose(only[:, 0], x[:, 1])


def test_bad_events(tmp_path):
    path = tmp_path / "events.tsv"
    path.write_text("onset\ttrial_type\n1\tgo\n")
    with pytest.raises(InputError, match="no 'duration' column") as err:
        events_to_inputs(path, 5, 1.0)
    assert str(err.value).startswith(str(path))
    path.write_text("onset\tduration\n1\tabc\n")
    with pytest.raises(InputError, match="non-numeric"):
        events_to_inputs(path, 5, 1.0)
    path.write_text("onset\tduration\n1\t2\n")
    with pytest.raises(InputError, match="no events of condition 'go'"):
        events_to_inputs(path, 5, 1.0, conditions=["go"])

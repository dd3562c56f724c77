"""benchmarks/julia_bson.py reads a BSON.jl checkpoint's arrays (column-major) without executing anything."""
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from julia_bson import arrays, parse_document, read_shallow_plrnn  # noqa: E402


def _element(key: str, value) -> bytes:
    name = key.encode() + b"\0"
    if isinstance(value, dict):
        return b"\x03" + name + _document(value)
    if isinstance(value, list):
        return b"\x04" + name + _document({str(i): v for i, v in enumerate(value)})
    if isinstance(value, str):
        raw = value.encode() + b"\0"
        return b"\x02" + name + struct.pack("<i", len(raw)) + raw
    if isinstance(value, bytes):
        return b"\x05" + name + struct.pack("<i", len(value)) + b"\0" + value
    if isinstance(value, bool):
        return b"\x08" + name + bytes([value])
    if isinstance(value, float):
        return b"\x01" + name + struct.pack("<d", value)
    if value is None:
        return b"\x0a" + name
    return b"\x12" + name + struct.pack("<q", value)


def _document(d: dict) -> bytes:
    body = b"".join(_element(k, v) for k, v in d.items())
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def _julia_array(a: np.ndarray) -> dict:
    """A BSON.jl array document: size in Julia's (column-major) order, data in column-major order."""
    return {"tag": "array", "type": {"tag": "datatype", "params": [], "name": ["Core", "Float32"]},
            "size": [int(n) for n in a.shape], "data": np.asfortranarray(a.astype(np.float32)).tobytes(order="F")}


def write_checkpoint(path: Path, params: dict, extra: list | None = None) -> None:
    """A file shaped like the reference code's ``[model, observation_model]`` checkpoint."""
    fields = [_julia_array(params[k]) for k in ("A", "W1", "W2", "h1", "h2")]
    plrnn = {"tag": "datatype", "name": ["GTFConv", "PLRNNs", "clippedShallowPLRNN"]}
    doc = {"model": [{"tag": "struct", "type": plrnn, "data": fields},
                     {"tag": "struct", "data": [_julia_array(a) for a in (extra or [])], "flag": True, "none": None,
                      "scale": 0.5}]}
    path.write_bytes(_document(doc))


def plrnn_params(M=3, L=5, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"A": rng.random(M), "W1": rng.standard_normal((M, L)), "W2": rng.standard_normal((L, M)),
            "h1": rng.standard_normal(M), "h2": rng.standard_normal(L)}


def test_reads_the_latent_model_in_julia_orientation(tmp_path):
    want = plrnn_params()
    path = tmp_path / "model_5000.bson"
    write_checkpoint(path, want, extra=[np.eye(3), np.zeros(3)])  # the Identity observation model's arrays
    got = read_shallow_plrnn(path)
    for k, v in want.items():
        assert got[k].shape == v.shape and np.allclose(got[k], v.astype(np.float32), rtol=0, atol=0)
    found = arrays(parse_document(path.read_bytes()))
    assert len(found) == 7 and np.array_equal(found[5], np.eye(3, dtype=np.float32))


def test_bad_files_are_errors(tmp_path):
    p = plrnn_params()
    short = tmp_path / "short.bson"  # h2 missing
    short.write_bytes(_document({"model": [{"data": [_julia_array(p[k]) for k in ("A", "W1", "W2", "h1")]}]}))
    with pytest.raises(ValueError, match="4 arrays, a shallow PLRNN has 5"):
        read_shallow_plrnn(short)
    swapped = tmp_path / "swapped.bson"
    swapped.write_bytes(_document({"m": [_julia_array(p[k]) for k in ("A", "W2", "W1", "h1", "h2")]}))
    with pytest.raises(ValueError, match="not a shallow PLRNN"):
        read_shallow_plrnn(swapped)
    odd = tmp_path / "odd.bson"
    odd.write_bytes(struct.pack("<i", 12) + b"\x07id\0" + b"\0" * 3 + b"\0")
    with pytest.raises(ValueError, match="element type"):
        parse_document(odd.read_bytes())

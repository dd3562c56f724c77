"""Read the parameters of a PLRNN checkpoint saved by the reference code (Julia, BSON.jl) as numpy arrays.

    python benchmarks/julia_bson.py model_5000.bson      # prints the arrays' shapes

The reference code (github humml-lab/GTF-ConvSSM) saves ``[model, observation_model]`` with BSON.jl; its
repository ships one trained Lorenz-63 model (``Results/Lorenz/test/001/checkpoints/model_5000.bson``). BSON is
a plain binary document format (bsonspec.org); BSON.jl writes a Julia array as a document with ``tag`` =
"array", ``size`` (column-major dimensions) and ``data`` (raw little-endian bytes). This reader walks the
documents and returns every Float32/Float64 array in the order it is stored; it executes nothing and builds
no Julia types (no unpickling of any kind).
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

_DTYPES = {"Float32": np.float32, "Float64": np.float64}


def parse_document(buf: bytes, pos: int = 0) -> dict:
    """One BSON document starting at ``pos`` → a dict (nested documents and arrays as dicts)."""
    size = struct.unpack_from("<i", buf, pos)[0]
    end, pos, out = pos + size, pos + 4, {}
    while pos < end - 1:
        kind = buf[pos]
        stop = buf.index(b"\0", pos + 1)
        key, pos = buf[pos + 1:stop].decode(), stop + 1
        if kind in (3, 4):  # document, array
            out[key] = parse_document(buf, pos)
            pos += struct.unpack_from("<i", buf, pos)[0]
        elif kind == 2:  # string
            n = struct.unpack_from("<i", buf, pos)[0]
            out[key], pos = buf[pos + 4:pos + 3 + n].decode(), pos + 4 + n
        elif kind == 5:  # binary
            n = struct.unpack_from("<i", buf, pos)[0]
            out[key], pos = buf[pos + 5:pos + 5 + n], pos + 5 + n
        elif kind in (1, 0x12):  # double, int64
            out[key], pos = struct.unpack_from("<d" if kind == 1 else "<q", buf, pos)[0], pos + 8
        elif kind == 0x10:  # int32
            out[key], pos = struct.unpack_from("<i", buf, pos)[0], pos + 4
        elif kind == 8:  # bool
            out[key], pos = bool(buf[pos]), pos + 1
        elif kind == 10:  # null
            out[key] = None
        else:
            raise ValueError(f"BSON element type {kind:#x} at byte {pos} is not supported")
    return out


def _element_type(doc: dict) -> str | None:
    """The element type's name of a BSON.jl array document (its ``type.name`` is e.g. ["Core", "Float32"])."""
    name = doc.get("type", {}).get("name", {})
    return name.get(str(len(name) - 1)) if isinstance(name, dict) and name else None


def arrays(doc, found: list | None = None) -> list[np.ndarray]:
    """Every numeric array in the document tree, in storage order, shaped as in Julia (column-major)."""
    found = [] if found is None else found
    if isinstance(doc, dict):
        if doc.get("tag") == "array" and isinstance(doc.get("data"), bytes) and "size" in doc:
            dtype = _DTYPES.get(_element_type(doc))
            if dtype is not None:
                shape = [doc["size"][k] for k in sorted(doc["size"], key=int)]
                found.append(np.frombuffer(doc["data"], dtype=dtype).reshape(shape[::-1]).T.copy())
            return found
        for value in doc.values():
            arrays(value, found)
    return found


def read_shallow_plrnn(path: str | Path) -> dict[str, np.ndarray]:
    """The clipped shallow PLRNN of a reference checkpoint: A (M,), W1 (M, L), W2 (L, M), h1 (M,), h2 (L,).

    The first five arrays of the file are the latent model's fields in declaration order (A, W₁, W₂, h₁, h₂,
    src/models/shallow_plrnn.jl); what follows belongs to the observation model.
    """
    found = arrays(parse_document(Path(path).read_bytes()))
    if len(found) < 5:
        raise ValueError(f"{path}: {len(found)} arrays, a shallow PLRNN has 5")
    A, W1, W2, h1, h2 = found[:5]
    M, L = W1.shape
    if A.shape != (M,) or W2.shape != (L, M) or h1.shape != (M,) or h2.shape != (L,):
        raise ValueError(f"{path}: shapes {[a.shape for a in found[:5]]} are not a shallow PLRNN's")
    return {"A": A, "W1": W1, "W2": W2, "h1": h1, "h2": h2}


if __name__ == "__main__":
    for k, v in read_shallow_plrnn(sys.argv[1]).items():
        print(k, v.shape, v.dtype)

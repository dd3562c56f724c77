"""Declared sizes checked before reading: a file's header must not make dsr allocate what the file
cannot hold or the machine cannot give.

A ``.npy`` header or a NIfTI header declares the array's shape and type; a corrupt or crafted file can
declare gigabytes in a few bytes. Every reader here compares the declared size with the bytes the file
can hold (deflate compresses at most 1032:1, so a gzip file of n bytes holds at most ~1032 n bytes) and
with the memory available, and refuses in one line naming the file before allocating anything.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dsr.errors import InputError

#: Deflate's largest compression ratio (RFC 1951: a 258-byte match coded in 2 bits, about 1032:1).
MAX_DEFLATE_RATIO = 1032
#: Fraction of the available memory one array may take (the rest is for its copies while it is used).
MEMORY_FRACTION = 0.5


def available_memory() -> int:
    """Bytes of memory this process may still use: the smaller of available RAM (``MemAvailable``) and a
    cgroup limit, when they can be read; 16 GiB otherwise."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 16 << 30
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit.isdigit() and int(limit) < (1 << 60):
                avail = min(avail, int(limit) - int(Path(usage_file).read_text().strip()))
        except (OSError, ValueError):
            continue
    return max(int(avail), 0)


def human(n: float) -> str:
    """Bytes as ``3.1 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def check_memory(nbytes: int, path, what: str) -> None:
    """Refuse an allocation of ``nbytes`` larger than :data:`MEMORY_FRACTION` of the available memory."""
    avail = available_memory()
    if nbytes > MEMORY_FRACTION * avail:
        raise InputError(f"{what} declares {human(nbytes)}, more than this machine can hold (about "
                         f"{human(avail)} of memory is available); is the file corrupt, or is a machine with "
                         "more memory needed?", path)


def check_declared(nbytes: int, path, what: str, offset: int = 0) -> None:
    """Refuse a file whose header declares more data than the file can hold, or than memory can hold.

    Parameters
    ----------
    nbytes : int
        Bytes of data the header declares.
    path : path
        The file (``.gz`` files may hold up to :data:`MAX_DEFLATE_RATIO` times their size).
    what : str
        What the file is, for the message (``"the NIfTI header"``).
    offset : int
        Bytes before the data (header), uncompressed.
    """
    path = Path(path)
    size = path.stat().st_size
    gz = path.name.lower().endswith(".gz")
    room = size * MAX_DEFLATE_RATIO if gz else size - offset
    if nbytes > room:
        held = f"a {human(size)} compressed file can hold at most {human(room)}" if gz else \
            f"the file holds {human(max(room, 0))} of data"
        raise InputError(f"{what} declares {human(nbytes)} of data but {held}: the file is truncated or "
                         "corrupt", path)
    check_memory(nbytes, path, what)


def npy_header(path) -> tuple[tuple, np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` file, read from its header only (nothing unpickled).

    Raises
    ------
    InputError
        Not a ``.npy`` file or an unreadable header.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # pragma: no cover - numpy refuses unknown versions in read_magic already
                raise ValueError(f"unknown .npy version {version}")
            return tuple(shape), dtype, fh.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise InputError(f"not a readable .npy file ({' '.join(str(exc).split())[:160]})", path) from None


def load_npy(path, what: str = "array") -> np.ndarray:
    """``np.load`` of a numeric ``.npy`` after checking its declared size (never unpickles).

    Raises
    ------
    InputError
        A header that declares more data than the file or memory holds, an object (pickled) array, or a
        truncated file, naming the file.
    """
    path = Path(path)
    shape, dtype, offset = npy_header(path)
    if dtype.hasobject:
        raise InputError(f"the {what} holds Python objects (a pickled array), which dsr never unpickles; save "
                         "it as a numeric array", path)
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    check_declared(nbytes, path, f"the .npy header ({what} of shape {shape}, {dtype})", offset)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable .npy {what} ({' '.join(str(exc).split())[:160]})", path) from None

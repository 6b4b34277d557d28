"""The C library, loaded once, for the few calls the ``os`` and ``mmap`` modules lack:
``syncfs`` (one flush per file system), ``msync`` (without holding the GIL) and ``madvise``
with ``MADV_POPULATE_WRITE`` (prefaulting).

Linux only: elsewhere, or when a symbol is missing, :func:`function` returns None and the
caller takes its portable fallback. Calls made through ``ctypes.CDLL`` release the GIL; they
report failure as -1 and leave the errno for :func:`last_errno`. Thread-safe (the loads are
cached; ctypes' errno is per thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import sys
from collections.abc import Callable, Sequence
from typing import Any


@functools.cache
def _library() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def function(
    name: str, argtypes: Sequence[type[Any]], restype: type[Any] = ctypes.c_int
) -> Callable[..., int] | None:
    """The libc function ``name`` with its C signature declared, or None where there is none.
    Callers keep the result (each call makes a new function object)."""
    lib = _library()
    if lib is None:
        return None
    try:
        fn = lib[name]  # a fresh function object: callers cannot clash over argtypes
    except AttributeError:
        return None
    fn.argtypes = list(argtypes)
    fn.restype = restype
    return fn


def last_errno() -> int:
    """The errno left by the last libc call of this thread."""
    return ctypes.get_errno()


def map_address(mm: mmap.mmap) -> int:
    """The address of ``mm``'s first byte. The temporary ctypes export is released at once,
    so the map can still be closed or resized afterwards. TypeError for a read-only map."""
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))

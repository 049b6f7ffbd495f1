"""Giving the C library's free heap pages back to the system once ``serve`` has started
(issue 17: resident memory)."""

from __future__ import annotations

import gc


def release_free_memory() -> bool:
    """Collect garbage, then ask glibc's malloc to return its heaps' free pages (``malloc_trim``).

    Importing the libraries reads every module's bytecode into buffers it frees again: glibc
    keeps those pages between live blocks (it only trims the top of a heap by itself), about
    1 MiB of a started ``serve``'s RSS. Run once, at start: later journeys reuse what they free.
    False where the C library has no ``malloc_trim`` (musl, macOS): nothing to do there."""
    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True

"""Giving the memory a background change freed back to the system, in a long-lived process.

A change decodes, segments and composites 1024x1536 images: tens of MB of buffers that Python,
Pillow and numpy free at the end, but that glibc's allocator keeps in its heaps for reuse, so a
warm process's RSS settles at its largest change plus that slack. `malloc_trim` hands the free
pages back (a warm process without rembg's stack: 222 -> 180 MB over 40 changes in
bench/RESULTS.md, issue 16 target 5). Called between runs, never inside one: it walks the heap.
"""

from __future__ import annotations

import ctypes
import functools
import sys


def release_freed_memory() -> None:
    """Return freed heap pages to the system (glibc); nothing elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The process's own symbols, libc's among them (no `find_library`: it runs ldconfig).
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # a libc without it (musl)
        return None

"""glibc's memory settings for long-lived processes: the service's workers and training's pool workers.

glibc keeps the heap pages a computation freed for later use, and gives each thread that allocates an arena of its
own: a process that lives through large batches or stages stays at their high-water mark. Where the C library is
not glibc, both functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


@functools.cache
def _glibc() -> Any:
    """The C library when it is glibc (mallopt, malloc_trim), else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def few_malloc_arenas(count: int = 2) -> bool:
    """Let glibc keep at most `count` malloc arenas in this process (False where there is no glibc). A service
    worker's request threads otherwise get an arena each and keep what they freed, so concurrent batches left a
    worker far above the 450 MiB goal (make bench's batch case). Set it before the threads start."""
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, count))


def release_freed_memory() -> None:
    """Hand the heap pages freed since the last call back to the system (glibc's malloc_trim)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)

"""A Dask worker plugin qbank registers on every cluster it runs on (imported only with Dask)."""

from __future__ import annotations

import ctypes
import ctypes.util

from distributed.diagnostics.plugin import WorkerPlugin

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


class ReuseHeapMemory(WorkerPlugin):
    """Let glibc reuse freed heap memory for the chunk kernel's temporaries.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes the mmap
    threshold at 128 KiB: every temporary array of a test step (a few MB) is then mmapped and
    faulted in afresh, measured 5x the CPU time of the same chunk in a plain process. Raising
    both thresholds (64 MiB mmap, 128 MiB trim) restores in-process speed; a worker keeps at most
    that much freed memory. A no-op where glibc is absent.
    """

    name = "qbank-reuse-heap-memory"

    def setup(self, worker):
        path = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(path)
            libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
            libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)
        except (OSError, AttributeError):
            pass

"""Threads for work that can wait for an idle core: they run at a lower CPU priority.

The tile cache's disk writes are written behind the answers (the entry is answered from
memory first); on a small machine they still took the cores a read needs while its tiles
arrive. A cold read of 81 tiles (benchmarks/bench_reads, C=81), A/B in one process over
30 alternating reads, medians: 120.7 ms with the writes on the shared executor, 115.8 ms
on a thread of their own, 102.0 ms on a thread of their own at nice 10.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

BACKGROUND_NICE = 10  # CFS gives a nice-10 thread ~1/10 of a core a nice-0 thread wants


def background_pool(name: str, workers: int = 1) -> ThreadPoolExecutor:
    """A pool whose threads (made on first use) run at :data:`BACKGROUND_NICE`."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=lower_priority)


def lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: nice is per thread); else nothing."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(current, BACKGROUND_NICE))
    except (AttributeError, OSError):  # no per-thread priority here: the process's applies
        pass

"""How many CPU threads torch may use here.

The machine is shared: with other processes on the cores, OpenMP threads that spin while waiting
for each other make a 2-thread run several times slower than a 1-thread run. The default is one
thread; ``ENCODERS_THREADS`` (or an explicit argument) raises it on a dedicated machine.
"""

from __future__ import annotations

import os

import torch


def configure(threads: int | None = None) -> int:
    """Set torch's intra-op threads (argument, else ``$ENCODERS_THREADS``, else 1); returns it."""
    if threads is None:
        threads = int(os.environ.get("ENCODERS_THREADS", "1"))
    threads = max(1, min(threads, os.cpu_count() or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads

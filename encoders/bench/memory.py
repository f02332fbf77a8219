"""Peak resident memory of the current process, for the benchmarks."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Highest resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: it belongs to the process's own address
    space, so a child started by a large parent (``fork`` + ``exec``) does not inherit the parent's
    figure, as ``getrusage(...).ru_maxrss`` does. Elsewhere it falls back to ``ru_maxrss``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

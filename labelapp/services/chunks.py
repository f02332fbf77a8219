"""Chunked work shared between Celery workers: one file per chunk claims it.

The task that runs an iteration enqueues helper tasks, then works through the chunks itself; a
chunk goes to whoever creates its claim file first (``O_EXCL``), so one worker alone finishes the
job and more workers finish it sooner. A claim whose chunk never finished is taken over after
``CLAIM_STALE_S`` (its helper is presumed dead). ``ARTIFACTS_DIR`` must be shared by the workers.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

CLAIM_STALE_S = 600.0


def chunk_claim(path: Path) -> bool:
    """Create ``path`` exclusively; False if another process claimed it first."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except (FileExistsError, FileNotFoundError):  # claimed, or the job is over (folder gone)
        return False
    os.write(fd, f"{socket.gethostname()} {os.getpid()} {time.time()}".encode())
    os.close(fd)
    return True


def claim_is_stale(path: Path, stale_after_s: float = CLAIM_STALE_S) -> bool:
    """The claim exists but is older than ``stale_after_s`` (or missing: nobody holds it)."""
    try:
        return time.time() - path.stat().st_mtime > stale_after_s
    except FileNotFoundError:
        return True

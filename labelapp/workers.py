"""How this project starts a Celery worker process of its own (benchmarks, tests)."""

from __future__ import annotations

import sys


def worker_command(queue: str, *, pool: str = "solo", name: str | None = None) -> list[str]:
    """The command line of one worker that consumes ``queue``, one task at a time.

    ``name`` tells apart several workers on the same queue (default: the queue's name).
    """
    return [
        sys.executable, "-m", "celery", "-A", "labelapp", "worker",
        "--pool", pool, "--concurrency", "1", "-Q", queue,
        "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n", f"{name or queue}@%h",
    ]  # fmt: skip

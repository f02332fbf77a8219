"""How this project starts a Celery worker process of its own (benchmarks, tests)."""

from __future__ import annotations

import sys


def worker_command(queue: str, *, pool: str = "solo") -> list[str]:
    """The command line of one worker that consumes ``queue`` alone, one task at a time."""
    return [
        sys.executable, "-m", "celery", "-A", "labelapp", "worker",
        "--pool", pool, "--concurrency", "1", "-Q", queue,
        "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n", f"{queue}@%h",
    ]  # fmt: skip

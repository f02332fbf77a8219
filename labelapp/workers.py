"""How this project starts a Celery worker process of its own (benchmarks, tests)."""

from __future__ import annotations

import sys

from django.db import connection


def worker_command(queue: str, *, pool: str = "solo", name: str | None = None) -> list[str]:
    """The command line of one worker that consumes ``queue``, one task at a time.

    ``name`` tells apart several workers on the same queue (default: the queue's name).
    """
    return [
        sys.executable, "-m", "celery", "-A", "labelapp", "worker",
        "--pool", pool, "--concurrency", "1", "-Q", queue,
        "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n", f"{name or queue}@%h",
    ]  # fmt: skip


def database_url_for_current_connection() -> str:
    """The URL of the database this process uses right now (in tests, the test database), for
    the worker processes it starts."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"

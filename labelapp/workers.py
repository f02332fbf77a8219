"""Celery worker processes: how this project starts one (benchmarks, tests), and how a running
worker tells the web side and the shell that it is there.

Every worker writes a small JSON file, its *beacon*, to ``ARTIFACTS_DIR/workers/`` every
:data:`BEACON_INTERVAL_S` seconds (a thread of the worker's main process, started when the worker
is ready, see :mod:`labelapp.celery`): its name, process id and the queues it consumes. A beacon
older than :data:`BEACON_STALE_S` belongs to a worker that stopped or was killed. Celery's remote
control (``celery inspect``) answers the same question on Redis, but not on the default
filesystem broker; web and workers share ``ARTIFACTS_DIR`` in every setup, so a file works on both.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

#: How often a worker rewrites its beacon, and after how long without one it counts as gone.
BEACON_INTERVAL_S = float(getattr(settings, "WORKER_BEACON_INTERVAL_S", 5.0))
BEACON_STALE_S = float(getattr(settings, "WORKER_BEACON_STALE_S", 20.0))
#: How long ``run_iteration --wait`` lets a queued iteration wait with no worker on its queue.
NO_WORKER_GRACE_S = float(getattr(settings, "WORKER_NO_CONSUMER_GRACE_S", 30.0))

START_HINT = "start one with `make worker` (or `celery -A labelapp worker`)"


def worker_command(
    queue: str,
    *,
    pool: str = "solo",
    name: str | None = None,
    beat_schedule: Path | None = None,
) -> list[str]:
    """The command line of one worker that consumes ``queue``, one task at a time.

    ``name`` tells apart several workers on the same queue (default: the queue's name).
    ``beat_schedule``: also run the periodic tasks (celery beat, embedded), keeping beat's state
    in that file.
    """
    command = [
        sys.executable, "-m", "celery", "-A", "labelapp", "worker",
        "--pool", pool, "--concurrency", "1", "-Q", queue,
        "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n", f"{name or queue}@%h",
    ]  # fmt: skip
    if beat_schedule is not None:
        command += ["-B", "--schedule", str(beat_schedule)]
    return command


# -- beacons -------------------------------------------------------------------------------------
def beacon_folder() -> Path:
    return Path(settings.ARTIFACTS_DIR) / "workers"


def _beacon_path(hostname: str, pid: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in hostname)
    return beacon_folder() / f"{safe}-{pid}.json"


class WorkerBeacon:
    """Rewrites one worker's beacon file on a timer until :meth:`stop` (which removes it)."""

    def __init__(self, hostname: str, queues: list[str], *, interval_s: float | None = None):
        self.hostname = hostname
        self.queues = sorted(queues)
        self.interval_s = BEACON_INTERVAL_S if interval_s is None else interval_s
        self.path = _beacon_path(hostname, os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "hostname": self.hostname,
            "pid": os.getpid(),
            "queues": self.queues,
            "at": time.time(),
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def start(self) -> None:
        self.write()
        self._thread = threading.Thread(target=self._run, name="worker-beacon", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.write()
            except OSError:
                pass  # a full or unmounted disk: the next beat tries again

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


def live_workers(*, queue: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """The workers whose beacon is fresh, optionally only those consuming ``queue``."""
    folder = beacon_folder()
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if now - float(data.get("at", 0)) > BEACON_STALE_S:
            continue
        if queue is None or queue in data.get("queues", []):
            found.append(data)
    return found


def beacons_remove_stale(*, older_than_s: float = 3600.0) -> int:
    """Delete beacons of workers gone for a while (killed ones never remove their own)."""
    folder = beacon_folder()
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in folder.glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def task_queue() -> str:
    """The queue the app's tasks go to (``CELERY_TASK_DEFAULT_QUEUE``)."""
    return str(getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery") or "celery")


def no_worker_message(queue: str | None = None) -> str | None:
    """What to tell the user when no worker consumes ``queue`` (default: the tasks' queue);
    None while one does."""
    queue = queue or task_queue()
    if live_workers(queue=queue):
        return None
    return (
        f"No worker is running on the queue {queue!r}, so queued work waits: {START_HINT}. "
        "`make run` starts one beside the web server."
    )


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


def worker_environment(queue: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process this process starts: its queue as the tasks' default,
    this process's database (in tests, the test database) and its files."""
    return {
        **os.environ,
        "DATABASE_URL": database_url_for_current_connection(),
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
        "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR),
        "UPLOADS_DIR": str(settings.UPLOADS_DIR),
        **extra,
    }

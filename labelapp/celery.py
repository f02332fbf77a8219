"""The Celery application. Workers: ``celery -A labelapp worker``; the periodic tasks
(``CELERY_BEAT_SCHEDULE``: the reaper) need one ``celery -A labelapp beat`` (or a worker's ``-B``).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")

app = Celery("labelapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_beacon = None


@worker_ready.connect
def _beacon_start(sender=None, **kwargs) -> None:
    """Tell the web side and the shell this worker is up, and which queues it consumes."""
    global _beacon
    from labelapp.workers import WorkerBeacon

    queues = list(getattr(sender.app.amqp.queues, "consume_from", None) or {}) or [
        sender.app.conf.task_default_queue
    ]
    _beacon = WorkerBeacon(getattr(sender, "hostname", None) or "worker", queues)
    _beacon.start()


@worker_shutdown.connect
def _beacon_stop(**kwargs) -> None:
    if _beacon is not None:
        _beacon.stop()

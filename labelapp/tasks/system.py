"""Tasks that check the plumbing."""

from __future__ import annotations

import os

from celery import shared_task


@shared_task(name="labelapp.ping")
def ping(value: int) -> dict[str, int]:
    """Round-trip check: returns the value doubled and the worker's process id."""
    return {"value": value * 2, "pid": os.getpid()}

"""The one place services enqueue Celery tasks: by the task's registered name.

Services never import :mod:`labelapp.tasks` (the tasks import the services they wrap), so the two
packages depend one way only; a task is addressed here by the name its ``@shared_task(name=...)``
registers, and routed like any other message of the app.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

ITERATION_RUN = "labelapp.iteration_run"
ITERATION_SCORE_CHUNK = "labelapp.iteration_score_chunk"
ITERATION_EMBED_CHUNKS = "labelapp.iteration_embed_chunks"
NEIGHBOR_INDEX_BUILD = "labelapp.neighbor_index_build"
CASE_MAP_BUILD = "labelapp.case_map_build"
ENCODER_PRETRAIN = "labelapp.encoder_pretrain"


def task_send(name: str, *args: Any, task_id: str | None = None) -> None:
    """Enqueue task ``name`` with positional ``args`` now."""
    from labelapp.celery import app

    # The registry (filled by autodiscovery) rather than send_task: apply_async honours the
    # app's eager setting and says at once when a name is not a registered task.
    if name not in app.tasks:
        app.loader.import_default_modules()  # Celery's autodiscovery, once per process
    app.tasks[name].apply_async(args=list(args), task_id=task_id)


def task_send_on_commit(name: str, *args: Any, task_id: str | None = None) -> None:
    """Enqueue task ``name`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task_send(name, *args, task_id=task_id))

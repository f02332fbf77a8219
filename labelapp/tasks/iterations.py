"""Iteration tasks: thin wrappers over :mod:`labelapp.services.pipeline`."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from labelapp.models import Iteration
from labelapp.services.chunks import chunk_claim
from labelapp.services.embedding import embedding_chunks_help
from labelapp.services.housekeeping import leftovers_remove
from labelapp.services.iterations import iteration_reap_stale
from labelapp.services.model_versions import case_scores_sync_pending
from labelapp.services.pipeline import score_chunk


@shared_task(name="labelapp.iteration_run")
def iteration_run(iteration_id: int) -> dict:
    """Run one iteration end to end (claims it first; a second delivery does no harm)."""
    from labelapp.services.pipeline import iteration_execute

    return iteration_execute(iteration_id=iteration_id)


@shared_task(name="labelapp.iteration_score_chunk")
def iteration_score_chunk(iteration_id: int, staging: str, start: int, stop: int) -> dict:
    """Help score rows ``start:stop`` of a running iteration, unless someone claimed them."""
    folder = Path(staging)
    running = Iteration.objects.filter(pk=iteration_id, status=Iteration.Status.RUNNING).exists()
    if not running or not (folder / "model.txt").exists():
        return {"chunk": start, "scored": False, "why": "iteration not running"}
    if not chunk_claim(folder / "scores" / f"{start}.claim"):
        return {"chunk": start, "scored": False, "why": "claimed by another worker"}
    score_chunk(folder, start, stop)
    return {"chunk": start, "scored": True}


@shared_task(name="labelapp.iteration_embed_chunks")
def iteration_embed_chunks(iteration_id: int, encoder: str, snapshot: str, out_path: str) -> dict:
    """Help embed a running iteration's cases: chunks nobody claimed yet, until none is left."""
    return embedding_chunks_help(
        iteration_id=iteration_id,
        encoder=Path(encoder),
        snapshot=Path(snapshot),
        out_path=Path(out_path),
    )


@shared_task(name="labelapp.iteration_reap_stale")
def iteration_reap_stale_task() -> dict:
    """Mark iterations whose worker stopped beating as failed, finish any ``Case.score`` copy a
    killed worker left half done, and remove old leftovers of killed runs (celery beat runs it
    every ``ITERATION_REAP_INTERVAL_S`` seconds: ``CELERY_BEAT_SCHEDULE``)."""
    reaped = iteration_reap_stale()
    synced = case_scores_sync_pending()
    return {"reaped": reaped, "scores_synced": synced, "removed": leftovers_remove()}

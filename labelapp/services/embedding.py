"""The embed stage fanned out: chunks of entities embedded by the iteration's task and helpers.

The library side (:class:`encoders.api.ChunkedEmbedding`) knows how to embed a share of the
chunks into one memmap; this module hands the chunks out. The iteration's task prepares the
memmap, enqueues ``LOOP_EMBED_HELPERS`` helper tasks and embeds every chunk it can claim; each
helper loads the encoder and featurizes once, then claims chunks until none is left. The stage's
progress is the number of chunks finished, by anyone. A chunk is written in full or recorded as
not done, so a rerun (a redelivered helper, a resumed iteration) only repeats unfinished chunks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings

from labelapp.models import Iteration
from labelapp.services.chunks import CLAIM_STALE_S, chunk_claim, claim_is_stale
from labelapp.services.dispatch import ITERATION_EMBED_CHUNKS, task_send
from labelapp.services.iterations import iteration_log_append

WAIT_POLL_S = 0.2


def embed_chunk_events() -> int | None:
    return int(getattr(settings, "LOOP_EMBED_CHUNK_EVENTS", 0)) or None


def embed_helpers() -> int:
    return max(int(getattr(settings, "LOOP_EMBED_HELPERS", 4)), 0)


def _job(encoder: Path, snapshot: Path, out_path: Path):
    from encoders.api import ChunkedEmbedding

    return ChunkedEmbedding(encoder, snapshot, out_path, chunk_events=embed_chunk_events())


def embeddings_compute(
    *,
    iteration_id: int,
    encoder: Path,
    snapshot: Path,
    out_path: Path,
    progress: Callable[[int, int], None],
    log: Callable[[str], None],
) -> np.ndarray:
    """Every case's embedding (read-only memmap), with helper tasks sharing the chunks."""
    torch_threads()
    job = _job(encoder, snapshot, out_path)
    total = len(job.keys)
    if job.prepare(resume=True):
        log(f"embeddings {out_path.name} already complete")
        return job.result()
    claims = claims_dir(out_path, iteration_id)
    claims.mkdir(parents=True, exist_ok=True)
    helpers = min(embed_helpers(), total - 1)
    for _ in range(helpers):
        task_send(ITERATION_EMBED_CHUNKS, iteration_id, str(encoder), str(snapshot), str(out_path))

    def report(done: int, n: int, info: dict | None = None) -> None:
        progress(len(job.done_keys()), total)

    mine = job.run(claim=lambda key: chunk_claim(claims / f"{key}.claim"), progress=report)
    while len(done := job.done_keys()) < total:
        progress(len(done), total)
        for key in job.keys:
            claim = claims / f"{key}.claim"
            if key not in done and claim_is_stale(claim, CLAIM_STALE_S):
                claim.touch()  # its helper is presumed dead: take the chunk over
                mine += job.run(claim=lambda k, key=key: k == key)
        time.sleep(WAIT_POLL_S)
    progress(total, total)
    shutil.rmtree(claims, ignore_errors=True)
    log(f"embedded {total} chunk(s): {len(mine)} here, {total - len(mine)} by helper tasks")
    return job.result()


def embedding_chunks_help(
    *, iteration_id: int, encoder: Path, snapshot: Path, out_path: Path
) -> dict:
    """A helper task's share: claim and embed chunks while the iteration runs."""

    def running() -> bool:
        return Iteration.objects.filter(pk=iteration_id, status=Iteration.Status.RUNNING).exists()

    claims = claims_dir(out_path, iteration_id)
    if not running() or not claims.is_dir():
        return {"embedded": [], "why": "iteration not running"}
    torch_threads()
    job = _job(encoder, snapshot, out_path)
    mine = job.run(
        claim=lambda key: running() and chunk_claim(claims / f"{key}.claim"),
    )
    iteration_log_append(
        iteration_id=iteration_id, text=f"helper task embedded {len(mine)} chunk(s)"
    )
    return {"embedded": mine}


def claims_dir(out_path: Path, iteration_id: int) -> Path:
    """Where one iteration's workers claim the chunks of ``out_path``."""
    return out_path.parent / f".{out_path.stem}-claims-{iteration_id}"


def torch_threads() -> None:
    """Torch's threads in a worker: ``LOOP_THREADS`` where set (else torch's own default)."""
    threads = int(getattr(settings, "LOOP_THREADS", 0))
    if threads:
        import torch

        torch.set_num_threads(threads)

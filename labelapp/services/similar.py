"""Writes about similar cases: the neighbour index of a model version, "more like this" batches.

The index lives beside the model's artifacts, in ``<artifact_dir>/neighbors/``: the
:class:`learning.neighbors.NeighborIndex` files plus ``space.json`` (which hand features, their
scaling, whether embeddings are in). Rows of the index are the dataset's case rows.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from labelapp.models import BatchItem, Case, Iteration, ModelVersion, PoolState
from labelapp.selectors.similar import (
    SPACE_FILE,
    case_neighbors,
    load_neighbor_index,
    neighbor_dir,
    neighbor_inputs,
)
from labelapp.services.audit import audit_event_create
from learning.neighbors import NeighborIndex, neighbor_matrix

#: Recall@10 the HNSW index is tuned to at build time (exact search below ~20k cases).
TARGET_RECALL = 0.95
#: Cases a "more like this" batch holds by default.
MORE_LIKE_THIS_SIZE = 20
#: Neighbours looked at to fill a "more like this" batch with cases still offerable.
MORE_LIKE_THIS_CANDIDATES = 200


def neighbor_index_build(*, model_version: ModelVersion, n_jobs: int = 1) -> dict[str, Any]:
    """Build (or rebuild) the neighbour index of ``model_version``; returns what was built.

    The space is the model's embeddings (when it was trained with some) beside the dataset's
    numeric hand features, robustly scaled (:func:`learning.neighbors.neighbor_matrix`). Written
    to a temporary folder and renamed into place, so readers never see half an index.

    An iteration that kept its parent's embeddings and data has the very same space: the
    parent's index files are then linked (or copied) instead of built again (about 4 minutes
    for 1.17M cases), and ``space["reused_from"]`` names the parent version. Builds of one
    dataset take turns (:func:`neighbor_build_lock`), so a child whose parent's index is still
    being built waits for it and then links it rather than building the same index beside it.
    """
    started = time.perf_counter()
    hand, names, embeddings = neighbor_inputs(model_version)
    matrix, scaling = neighbor_matrix(embeddings, hand)
    emb_dim = 0 if embeddings is None else int(embeddings.shape[1])
    space = {
        "hand_features": names,
        "hand_offset": emb_dim,
        "hand_factor": 1.0 / float(np.sqrt(max(len(names), 1))),
        "scaling": scaling.to_json() if scaling is not None else None,
        "embedding_dim": emb_dim,
        "n_cases": int(len(matrix)),
        "matrix_sha256": matrix_fingerprint(matrix),
    }
    with neighbor_build_lock(model_version.dataset_id):
        _index_write(model_version, matrix, space, started=started, n_jobs=n_jobs)
    audit_event_create(
        actor=None,
        verb="neighbors.build",
        dataset=model_version.dataset,
        target=model_version,
        data={
            k: space[k]
            for k in ("method", "n_cases", "embedding_dim", "reused_from", "build_seconds")
        },
        via="worker",
    )
    return space


@contextmanager
def neighbor_build_lock(dataset_id: int) -> Iterator[None]:
    """Hold the exclusive lock on building neighbour indexes of one dataset.

    An ``flock`` on a file under ``ARTIFACTS_DIR/locks`` (which the workers share): the kernel
    releases it when its holder exits, so a killed worker never leaves it taken.
    """
    folder = Path(settings.ARTIFACTS_DIR) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"neighbors-dataset-{dataset_id}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _index_write(
    model_version: ModelVersion,
    matrix: np.ndarray,
    space: dict[str, Any],
    *,
    started: float,
    n_jobs: int,
) -> None:
    """Link the parent's index or build one, and publish it with ``space`` (completed here with
    ``method``, ``ef_search``, ``tuning``, ``reused_from`` and ``build_seconds``, counted from
    ``started``); the caller holds the dataset's build lock."""
    final = neighbor_dir(model_version)
    tmp = final.with_name(final.name + f".tmp-{time.time_ns()}")
    parent = _same_space_parent(model_version, space["matrix_sha256"])
    if parent is not None:
        parent_space = _link_index_files(neighbor_dir(parent), tmp)
        space.update({k: parent_space[k] for k in ("method", "ef_search", "tuning")})
    else:
        index = NeighborIndex(method="auto", target_recall=TARGET_RECALL, n_jobs=n_jobs)
        index.fit(matrix)
        index.save(tmp)
        space.update(method=index.method_, ef_search=index.ef_search_, tuning=index.tuning_)
    space["reused_from"] = None if parent is None else parent.pk
    space["build_seconds"] = time.perf_counter() - started
    (tmp / SPACE_FILE).write_text(json.dumps(space, indent=2))
    if final.exists():
        old = final.with_name(final.name + f".old-{time.time_ns()}")
        final.rename(old)
        tmp.rename(final)
        _remove_tree(old)
    else:
        tmp.rename(final)
    load_neighbor_index.cache_clear()


def matrix_fingerprint(matrix: np.ndarray) -> str:
    """SHA-256 of a neighbour space's shape, dtype and values (0.2 s for 1.17M x 77 float32)."""
    digest = hashlib.sha256(f"{matrix.shape}|{matrix.dtype}".encode())
    digest.update(np.ascontiguousarray(matrix).data)
    return digest.hexdigest()


def _same_space_parent(version: ModelVersion, fingerprint: str) -> ModelVersion | None:
    """The parent version, when its finished index was built on exactly this space."""
    parent = version.parent
    if parent is None:
        return None
    space_path = neighbor_dir(parent) / SPACE_FILE
    try:
        parent_space = json.loads(space_path.read_text())
    except (OSError, ValueError):
        return None
    return parent if parent_space.get("matrix_sha256") == fingerprint else None


def _link_index_files(source: Path, target: Path) -> dict[str, Any]:
    """Hard-link (copy where links fail) the index files of ``source`` into a new ``target``;
    returns the source's ``space.json``."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name == SPACE_FILE or not item.is_file():
            continue
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copy2(item, target / item.name)
    return json.loads((source / SPACE_FILE).read_text())


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def batch_more_like_this(
    *, user: Any, case: Case, size: int = MORE_LIKE_THIS_SIZE
) -> tuple[Iteration, list[BatchItem]]:
    """Add the ``size`` nearest still-offerable cases of ``case`` to the experts' current batch.

    The batch is the dataset's newest iteration that has one (what the experts' queue serves);
    without any, a new done iteration holds it. Chosen cases turn ``shown`` like the loop's.

    Raises
    ------
    FileNotFoundError
        The current model has no neighbour index yet.
    """
    dataset = case.dataset
    found = case_neighbors(case, n_neighbors=MORE_LIKE_THIS_CANDIDATES)
    offerable = (PoolState.UNLABELED, PoolState.SKIPPED)
    with transaction.atomic():
        by_row = {
            c.row: c
            for c in Case.objects.select_for_update().filter(
                dataset=dataset, row__in=[int(r) for r in found.rows], pool_state__in=offerable
            )
        }
        pairs = zip(found.rows.tolist(), found.distances.tolist(), strict=True)
        chosen = [(by_row[r], d) for r, d in pairs if r in by_row][:size]
        iteration = _batch_iteration(dataset, user=user, case=case)
        in_batch = set(
            BatchItem.objects.filter(iteration=iteration).values_list("case_id", flat=True)
        )
        chosen = [(c, d) for c, d in chosen if c.pk not in in_batch]
        start = (
            BatchItem.objects.filter(iteration=iteration).aggregate(m=Max("position"))["m"] or 0
        ) + 1
        items = BatchItem.objects.bulk_create(
            BatchItem(
                iteration=iteration,
                case=c,
                position=start + i,
                score=c.score,
                reason=f"more like {case.case_id} (distance {d:.3g})"[:200],
            )
            for i, (c, d) in enumerate(chosen)
        )
        Case.objects.filter(pk__in=[c.pk for c, _ in chosen]).update(pool_state=PoolState.SHOWN)
        audit_event_create(
            actor=user,
            verb="batch.more_like_this",
            dataset=dataset,
            target=case,
            data={"iteration": iteration.pk, "added": [c.case_id for c, _ in chosen]},
        )
    return iteration, items


def _batch_iteration(dataset, *, user: Any, case: Case) -> Iteration:
    from labelapp.services.queue import current_batch_iteration

    iteration = current_batch_iteration(dataset)
    if iteration is not None:
        return iteration
    number = (dataset.iterations.aggregate(m=Max("number"))["m"] or 0) + 1
    now = timezone.now()
    return Iteration.objects.create(
        dataset=dataset,
        number=number,
        status=Iteration.Status.DONE,
        stage="more like this",
        params={"kind": "more_like_this", "case": case.case_id},
        launched_by=user if getattr(user, "is_authenticated", False) else None,
        started_at=now - timedelta(seconds=0),
        finished_at=now,
        log=f"Batch built by hand: more like case {case.case_id}.\n",
    )

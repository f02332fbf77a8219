"""Writes the map of a model version's cases: a stratified sample projected to 2-D.

A worker computes it after the iteration (the loop enqueues :data:`CASE_MAP_BUILD` after
finalize) or when an admin asks; the result is a small JSON file in the version's
``artifact_dir`` (:data:`MAP_FILE`), with a status file beside it while it is queued, running or
after it failed (:data:`STATUS_FILE`). What is projected: the version's embeddings when it was
trained with some, else the numeric columns of its feature matrix, standardized. The sampling
and the projection are :mod:`learning.projection`'s.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.utils import timezone

from labelapp.models import BatchItem, Case, ModelVersion
from labelapp.selectors.case_map import MAP_FILE, STATUS_FILE, case_map_status
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.audit import audit_event_create
from labelapp.services.dispatch import CASE_MAP_BUILD, task_send_on_commit
from learning.featurespec import DEVIATION_FILE, FeatureSpec, build_matrix
from learning.knn_feature import KNN_FEATURE, KNN_FILE
from learning.projection import (
    DEFAULT_SAMPLE_SIZE,
    group_counts,
    project_2d,
    standardize,
    stratified_sample,
)

#: Decimals kept of the coordinates, significant digits of the scores (PU scores run down to
#: 1e-7: the map colours them on a log scale) in the JSON file.
COORD_DIGITS = 4
SCORE_DIGITS = 4


class CaseMapError(ValueError):
    """The map of this version cannot be computed (missing artifacts); the message says why."""


def case_map_request(*, model_version: ModelVersion, user: Any = None, via: str = "page") -> None:
    """Mark the map of ``model_version`` queued and enqueue its computation (after commit)."""
    _status_write(model_version, state="queued", step="waiting for a worker")
    if user is not None:
        audit_event_create(
            actor=user,
            verb="model.map_compute",
            dataset=model_version.dataset,
            target=model_version,
            via=via,
        )
    task_send_on_commit(CASE_MAP_BUILD, model_version.pk)


def case_map_build(
    *, model_version: ModelVersion, sample_size: int = DEFAULT_SAMPLE_SIZE, random_state: int = 0
) -> dict[str, Any]:
    """Compute the map of ``model_version`` and write it to its ``artifact_dir``; returns it.

    A failure is written to the status file (the page shows it) and raised again.
    """
    try:
        return _build(model_version, sample_size=sample_size, random_state=random_state)
    except Exception as exc:
        _status_write(
            model_version, state="failed", step="", message=f"{type(exc).__name__}: {exc}"
        )
        raise


def _build(version: ModelVersion, *, sample_size: int, random_state: int) -> dict[str, Any]:
    from labelapp.services.pipeline import pool_states

    folder = Path(version.artifact_dir)
    if not folder.is_dir():
        raise CaseMapError(f"the version's artifact folder {folder} does not exist")
    seconds: dict[str, float] = {}
    started = clock = time.perf_counter()
    _status_write(version, state="running", step="sampling cases")
    dataset = version.dataset
    states = pool_states(dataset)
    in_batch = np.zeros(len(states), dtype=bool)
    if version.iteration_id:
        batch = BatchItem.objects.filter(iteration_id=version.iteration_id)
        in_batch[np.fromiter(batch.values_list("case__row", flat=True), dtype=np.int64)] = True
    rows = stratified_sample(states, in_batch, sample_size, random_state=random_state)
    scores = _scores(folder, len(states))
    seconds["sample"] = time.perf_counter() - clock

    clock = time.perf_counter()
    _status_write(version, state="running", step=f"reading the vectors of {len(rows):,} cases")
    vectors, space = _vectors(version, rows)
    seconds["vectors"] = time.perf_counter() - clock

    clock = time.perf_counter()
    method = "UMAP" if len(rows) >= 50 else "PCA"
    _status_write(version, state="running", step=f"projecting {len(rows):,} cases ({method})")
    projection = project_2d(vectors, random_state=random_state)
    seconds["project"] = time.perf_counter() - clock

    pk_and_id = dict(
        (row, (pk, case_id))
        for row, pk, case_id in Case.objects.filter(dataset=dataset, row__in=rows.tolist())
        .values_list("row", "pk", "case_id")
        .iterator()
    )
    kept = [i for i, r in enumerate(rows.tolist()) if r in pk_and_id]
    rows, xy = rows[kept], projection.xy[kept]
    seconds["total"] = time.perf_counter() - started
    result = {
        "version": version.pk,
        "dataset": dataset.name,
        "computed_at": timezone.now().isoformat(),
        "space": space,
        "method": projection.method,
        "n_cases": int(len(states)),
        "sample_size": int(len(rows)),
        "counts": dict(group_counts(states[rows], in_batch[rows])),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "points": {
            "case": [pk_and_id[r][0] for r in rows.tolist()],
            "case_id": [pk_and_id[r][1] for r in rows.tolist()],
            "x": np.round(xy[:, 0].astype(float), COORD_DIGITS).tolist(),
            "y": np.round(xy[:, 1].astype(float), COORD_DIGITS).tolist(),
            "state": states[rows].tolist(),
            "score": [float(f"{s:.{SCORE_DIGITS}g}") for s in scores[rows].tolist()],
            "batch": in_batch[rows].astype(int).tolist(),
        },
    }
    _json_replace(folder / MAP_FILE, result)
    (folder / STATUS_FILE).unlink(missing_ok=True)
    return result


def _scores(folder: Path, n_cases: int) -> np.ndarray:
    path = folder / "scores.npy"
    if not path.exists():
        raise CaseMapError(f"the version has no scores ({path.name} is missing)")
    scores = np.load(path, mmap_mode="r")
    if len(scores) != n_cases:
        raise CaseMapError(f"{path.name} has {len(scores):,} scores for {n_cases:,} cases")
    return scores


def _vectors(version: ModelVersion, rows: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The sampled cases' vectors and what space they are in (for the page)."""
    folder = Path(version.artifact_dir)
    inputs = _read_json(folder / "inputs.json")
    emb_path = inputs.get("embeddings")
    if emb_path:
        if not Path(emb_path).exists():
            raise CaseMapError(f"the version's embeddings {emb_path} are gone")
        embeddings = np.load(emb_path, mmap_mode="r")
        vectors = np.asarray(embeddings[rows], dtype=np.float32)
        return vectors, {
            "kind": "embeddings",
            "dim": int(vectors.shape[1]),
            "label": f"the version's behaviour-sequence embeddings ({vectors.shape[1]} dimensions)",
        }
    spec_path = folder / "feature_spec.json"
    if not spec_path.exists():
        raise CaseMapError("the version has no feature_spec.json to rebuild its features from")
    spec = FeatureSpec.load(spec_path)
    X = _feature_rows(version, spec, rows)
    categorical = set(spec.categorical_indices)
    keep = [i for i in range(X.shape[1]) if i not in categorical]
    vectors = standardize(X[:, keep])
    return vectors, {
        "kind": "features",
        "dim": len(keep),
        "label": f"the version's feature matrix: {len(keep)} numeric features, standardized "
        f"(categorical columns left out)",
    }


def _feature_rows(version: ModelVersion, spec: FeatureSpec, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of the version's feature matrix, rebuilt as the scorer rebuilds them."""
    import pandas as pd
    import pyarrow.parquet as pq

    folder = Path(version.artifact_dir)
    named = _read_json(folder / "inputs.json").get("snapshot")
    snapshot = Path(named) if named else snapshot_dir_for(version.dataset)
    if not (snapshot / "cases.parquet").exists():
        snapshot = snapshot_dir_for(version.dataset)
    path = snapshot / "cases.parquet"
    if "row" in pq.read_schema(path).names:
        table = pq.read_table(path, filters=[("row", "in", rows.tolist())])
        cases = table.to_pandas().sort_values("row", kind="stable").reset_index(drop=True)
    else:
        cases = pq.read_table(path).to_pandas().iloc[rows].reset_index(drop=True)
    if len(cases) != len(rows):
        raise CaseMapError(f"the snapshot {snapshot} lacks some of the sampled rows")
    positives_path = folder / "positives.parquet"
    positives = pd.read_parquet(positives_path) if positives_path.exists() else None
    deviation = None
    if spec.deviation_columns:
        deviation = np.load(folder / DEVIATION_FILE, mmap_mode="r")[rows]
    if spec.knn_neighbors:
        cases[KNN_FEATURE] = np.load(folder / KNN_FILE, mmap_mode="r")[rows]
    return build_matrix(spec, cases, positives=positives, deviation=deviation)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _status_write(version: ModelVersion, *, state: str, step: str, message: str = "") -> None:
    folder = Path(version.artifact_dir)
    if not folder.is_dir():
        return
    previous = case_map_status(version) or {}
    since = previous.get("since") if previous.get("state") == state else None
    now = timezone.now().isoformat()
    _json_replace(
        folder / STATUS_FILE,
        {"state": state, "step": step, "message": message, "since": since or now, "at": now},
    )


def _json_replace(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    tmp.replace(path)

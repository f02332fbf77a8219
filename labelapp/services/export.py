"""Export a model version as a sealed bundle (:mod:`learning.bundle`) that scores outside the app.

The bundle holds the model version's artifacts (``model.txt``, ``feature_spec.json``,
``positives.parquet``, ``encoder.pt`` when embeddings are used), its training parameters and
metrics, and a model card written here from what the database knows (data, iterations, labels).
Every export is an audit event: who took which model, when, and the bundle's manifest digest.

A model trained with the kNN feature does not carry what computes it (every case's vector and
the known positives: the pool's whole index). Its manifest (``caller_supplies``), model card and
``docs/api.md`` say that the caller supplies the ``knn_positive_share`` column with the cases;
the scorer stops with a message naming the column when it is missing.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.utils import timezone

from labelapp.models import Iteration, Label, ModelVersion
from labelapp.services.audit import audit_event_create
from learning.bundle import Manifest, sha256_bytes, write_bundle
from learning.featurespec import FeatureSpec
from learning.knn_feature import KNN_FEATURE

ARTIFACT_FILES = ("model.txt", "feature_spec.json", "positives.parquet", "encoder.pt")


class ExportError(Exception):
    """The model version cannot be exported (its artifacts are missing)."""


def export_dir() -> Path:
    folder = Path(settings.ARTIFACTS_DIR) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def bundle_filename(model_version: ModelVersion) -> str:
    return f"{model_version.dataset.name}-model-v{model_version.pk}.zip"


def model_version_export(
    *, model_version: ModelVersion, out: Path | BinaryIO, actor: Any = None, via: str = "page"
) -> Manifest:
    """Write ``model_version``'s bundle to ``out`` (a path or a binary file) and record it.

    Raises
    ------
    ExportError
        The artifact folder lacks the model or its feature specification.
    """
    files = bundle_members(model_version)
    info = {
        "model_version": model_version.pk,
        "dataset": model_version.dataset.name,
        "iteration": model_version.iteration.number if model_version.iteration else None,
        "exported_by": getattr(actor, "username", None) or None,
        "score_with": "python -m learning.score BUNDLE.zip --cases CASES.parquet "
        "[--events EVENTS.parquet] --out SCORES.csv",
    }
    spec = FeatureSpec.load(Path(model_version.artifact_dir) / "feature_spec.json")
    if spec.knn_neighbors:
        info["caller_supplies"] = {KNN_FEATURE: _knn_requirement(spec)}
    manifest = write_bundle(out, files, info=info)
    audit_event_create(
        actor=actor,
        verb="model.export",
        dataset=model_version.dataset,
        target=model_version,
        data={
            "file": bundle_filename(model_version),
            "manifest_sha256": sha256_bytes(manifest.to_json().encode()),
            "files": {name: entry["sha256"] for name, entry in manifest.files.items()},
        },
        via=via,
    )
    return manifest


def model_version_export_file(
    *, model_version: ModelVersion, actor: Any = None, via: str = "page"
) -> tuple[BinaryIO, int]:
    """Export into an anonymous temporary file (gone once closed): ``(file at 0, size)``."""
    handle = tempfile.TemporaryFile(dir=export_dir())  # noqa: SIM115 (the caller closes it)
    try:
        model_version_export(model_version=model_version, out=handle, actor=actor, via=via)
    except BaseException:
        handle.close()
        raise
    size = handle.tell()
    handle.seek(0)
    return handle, size


def bundle_members(model_version: ModelVersion) -> dict[str, Path | str]:
    """Every member of the bundle: artifact files, params, metrics, encoder config, model card."""
    folder = Path(model_version.artifact_dir)
    if not (folder / "model.txt").is_file() or not (folder / "feature_spec.json").is_file():
        raise ExportError(
            f"model version {model_version.pk} has no model.txt and feature_spec.json in "
            f"{folder}; it cannot be exported"
        )
    spec = FeatureSpec.load(folder / "feature_spec.json")
    files: dict[str, Path | str] = {
        name: folder / name for name in ARTIFACT_FILES if (folder / name).is_file()
    }
    if spec.embedding_dim and "encoder.pt" not in files:
        raise ExportError(f"model version {model_version.pk} uses embeddings but has no encoder")
    files["params.json"] = _json_file(folder / "params.json", model_version.params)
    files["metrics.json"] = _json_file(folder / "metrics.json", model_version.metrics)
    if "encoder.pt" in files:
        files["encoder_config.json"] = _encoder_config(folder / "encoder.pt")
    files["model_card.md"] = model_card(model_version, spec)
    return files


def _knn_requirement(spec: FeatureSpec) -> str:
    return (
        f"a case column: the share (0 to 1) of known positives (seed positives and "
        f"expert-confirmed cases) among the case's {spec.knn_neighbors} nearest neighbours in "
        "the app's similar-cases space, the case itself left out; the bundle cannot compute it"
    )


def _json_file(path: Path, fallback: dict) -> Path | str:
    return path if path.is_file() else json.dumps(fallback or {}, indent=2, default=str) + "\n"


def _encoder_config(checkpoint: Path) -> str:
    """The encoder's architecture in plain JSON (the weights file carries it too)."""
    from encoders.checkpoint import load_raw  # torch only for models with an encoder

    raw = load_raw(checkpoint)
    return json.dumps({"config": raw.get("config", {})}, indent=2, default=str) + "\n"


def _label_counts(model_version: ModelVersion) -> dict[str, int]:
    """Standing answers on the dataset's cases when the model was trained."""
    labels = Label.objects.filter(
        case__dataset=model_version.dataset, created_at__lte=model_version.created_at
    ).without_checks()  # hidden checks measure experts, they train nothing
    undone = set(labels.filter(undoes__isnull=False).values_list("undoes_id", flat=True))
    counts = Counter(
        answer
        for pk, answer in labels.exclude(answer=Label.Answer.UNDONE).values_list("id", "answer")
        if pk not in undone
    )
    return {answer: counts.get(answer, 0) for answer in ("confirmed", "not_confirmed", "skipped")}


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value)} |" for key, value in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return "`" + json.dumps(value, default=str)[:200] + "`"
    return str(value)


def model_card(model_version: ModelVersion, spec: FeatureSpec) -> str:
    """The model card (markdown): data, iterations, labels used, performance, known limits."""
    dataset = model_version.dataset
    iterations = Iteration.objects.filter(
        dataset=dataset, created_at__lte=model_version.created_at
    ).order_by("number")
    labels = _label_counts(model_version)
    n_label_derived = len(spec.label_derived_names)
    parts = [
        f"# Model card: {dataset.name}, model version {model_version.pk}",
        "",
        f"Exported {timezone.now():%Y-%m-%d %H:%M} UTC. "
        f"Trained {model_version.created_at:%Y-%m-%d %H:%M} UTC"
        + (f" by iteration {model_version.iteration.number}" if model_version.iteration else "")
        + (f", from model version {model_version.parent_id}" if model_version.parent_id else "")
        + ". Current model of the dataset: "
        + ("yes" if dataset.current_model_id == model_version.pk else "no")
        + ".",
        "",
        "## What it does",
        "",
        "A two-step PU model (spies, then reliable negatives, with EM rounds) on a LightGBM "
        "gradient-boosted tree ensemble. It ranks cases by how likely they are cash-out, learned "
        "from known positives (seed positives and expert-confirmed cases) and unlabeled cases.",
        "",
        "## Data",
        "",
        _table(
            [
                ("dataset", dataset.name),
                ("cases", dataset.n_cases),
                ("events", dataset.n_events),
                ("seed positives", dataset.n_seed_positive),
                ("training snapshot", model_version.data_snapshot or "not recorded"),
            ]
        ),
        "",
        "## Features",
        "",
        _table(
            [
                ("numeric columns", ", ".join(spec.numeric_columns) or "none"),
                ("categorical columns", ", ".join(spec.categorical_columns) or "none"),
                (
                    "entity deviation",
                    f"{', '.join(spec.deviation_columns)} each divided by the mean of the same "
                    f"{spec.entity_column}'s earlier cases among the cases scored"
                    if spec.deviation_columns
                    else "none",
                ),
                (
                    "label-derived",
                    f"{n_label_derived} counts of known positives sharing "
                    f"{', '.join(spec.label_derived_columns)} in the "
                    f"{', '.join(f'{w:g}' for w in spec.label_derived_windows_days)} days before "
                    "each case (from positives.parquet)"
                    if n_label_derived
                    else "none",
                ),
                (
                    "embeddings",
                    f"{len(spec.used_embedding_columns)} of the {spec.embedding_dim} columns "
                    "of the behavior-sequence encoder's vector "
                    f"(encoder.pt, sequences up to {spec.sequence_length} events)"
                    if spec.embedding_dim
                    else "none",
                ),
                (
                    "kNN feature",
                    f"{KNN_FEATURE}: {_knn_requirement(spec)}" if spec.knn_neighbors else "none",
                ),
                ("total", len(spec.feature_names)),
            ]
        ),
        "",
        "## Iterations",
        "",
    ]
    if iterations:
        parts += ["| # | status | finished | batch size | metrics |", "|---|---|---|---|---|"]
        for it in iterations:
            finished = f"{it.finished_at:%Y-%m-%d %H:%M}" if it.finished_at else ""
            batch = it.params.get("batch_size", "") if isinstance(it.params, dict) else ""
            parts.append(
                f"| {it.number} | {it.status} | {finished} | {batch} | {_fmt(it.metrics)} |"
            )
    else:
        parts.append("No iterations recorded (the model was trained outside the loop).")
    parts += [
        "",
        "## Labels used",
        "",
        _table(
            [
                ("seed positives", dataset.n_seed_positive),
                ("expert-confirmed positives", labels["confirmed"]),
                ("not confirmed (kept in U)", labels["not_confirmed"]),
                ("skipped", labels["skipped"]),
            ]
        ),
        "",
        "## Training parameters",
        "",
        _table(sorted((model_version.params or {}).items()))
        if model_version.params
        else "See params.json.",
        "",
        "## Measured performance",
        "",
        _table(sorted((model_version.metrics or {}).items()))
        if model_version.metrics
        else "No metrics recorded.",
        "",
        "## Known limits",
        "",
        "- PU learning: unlabeled is not negative. The score ranks cases; it is not a calibrated "
        "probability of fraud, and its scale shifts between versions.",
        '- "Not confirmed" answers mean an expert found no evidence, not that a case is clean.',
        "- Seed positives come from rules and other models and carry their biases and noise.",
        "- Categories unseen in training are treated as missing.",
        "- Entity-deviation features compare each case with its entity's earlier cases in the "
        "file you score: pass those earlier cases too (as you pass events for embeddings), or "
        "an entity's first case in the file has no deviation (missing).",
        "- Label-derived features count the positives known at training time "
        "(positives.parquet); new confirmations are not seen until the next model.",
        "- Performance was measured on the data above; data drift needs re-measuring.",
        *(
            [
                f"- This model uses the kNN feature: cases must carry a {KNN_FEATURE} column "
                "(see Features); the scorer refuses cases without it. Values from another "
                "neighbour space or another set of positives shift the scores.",
            ]
            if spec.knn_neighbors
            else []
        ),
        "- positives.parquet holds the identifiers and times of the known positives (the "
        "label-derived features need them): treat the bundle as confidential data.",
        "",
        "## How to score outside the app",
        "",
        "```",
        "python -m learning.score BUNDLE.zip --cases CASES.parquet [--events EVENTS.parquet] "
        "--out SCORES.csv",
        "```",
        "",
        "Cases (and events) in the dataset format: raw values, the same columns as imported"
        + (f", plus {KNN_FEATURE}" if spec.knn_neighbors else "")
        + ". The scorer checks manifest.json and the archive seal first and refuses a changed "
        "bundle.",
        "",
    ]
    return "\n".join(parts)

"""Data factories for the app's tests: plain functions that write folders or create rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from labelapp.demo import generate_demo_dataset
from labelapp.models import (
    BatchItem,
    Case,
    Dataset,
    Event,
    Iteration,
    ModelVersion,
    PatternTag,
    PoolState,
)
from labelapp.services.case_scores import case_scores_store

FEATURES = ("amount", "customer_nb_tx_7d", "terminal_nb_tx_30d")
T0 = datetime(2018, 4, 1, tzinfo=UTC)

# Compromises are far more frequent than in the demo so that a few hundred cases hold positives.
SMALL_TERMINAL_RATE = 0.01
SMALL_CUSTOMER_RATE = 0.02


def make_dataset_dir(
    tmp_path: Path,
    n_cases: int = 400,
    with_events: bool = True,
    seed: int = 0,
    *,
    fmt: str = "parquet",
    name: str = "demo",
) -> Path:
    """Write a small valid dataset folder (SPEC format) under ``tmp_path / name``.

    Card transactions from :mod:`labelapp.demo` with the planted cash-out patterns (compromised
    terminals, compromised customers with inflated amounts, amounts over 220) in ``label``, and
    seed positives from the rule ``amount > 220`` (a biased subset of the positives).
    ``fmt`` is ``"parquet"`` or ``"csv"``. Returns the folder.
    """
    folder = generate_demo_dataset(
        Path(tmp_path) / name,
        n_cases=n_cases,
        seed=seed,
        terminal_rate=SMALL_TERMINAL_RATE,
        customer_rate=SMALL_CUSTOMER_RATE,
    )
    if not with_events:
        (folder / "events.parquet").unlink()
    if fmt == "csv":
        for table in ("cases", "events"):
            parquet = folder / f"{table}.parquet"
            if parquet.exists():
                pd.read_parquet(parquet).to_csv(folder / f"{table}.csv", index=False)
                parquet.unlink()
    return folder


def make_dataset(
    *,
    name: str = "toy",
    n_cases: int = 20,
    n_seed: int = 2,
    events: bool = True,
    scores: bool = False,
):
    """A ready dataset with ``n_cases`` cases of three numeric features and, optionally, events.

    Case ``i`` belongs to entity ``e{i % 5}`` at ``T0 + i hours``; its entity has one event per
    case at the same moment (amount = the case's amount), so every case has a timeline.
    With ``scores``, lists show case ``i`` scored ``i / n_cases`` (:func:`shown_scores_create`).
    """
    dataset = Dataset.objects.create(
        name=name,
        status=Dataset.Status.READY,
        feature_columns=list(FEATURES),
        schema={
            "cases": {"numeric": list(FEATURES), "categorical": []},
            "events": {"numeric": ["amount"], "categorical": ["terminal_id"], "text": []},
        },
    )
    cases = []
    for i in range(n_cases):
        seed = i < n_seed
        cases.append(
            Case(
                dataset=dataset,
                row=i,
                case_id=f"c{i:04d}",
                entity_id=f"e{i % 5}",
                ts=T0 + timedelta(hours=i),
                seed_positive=seed,
                pool_state=PoolState.POSITIVE if seed else PoolState.UNLABELED,
                features={
                    "amount": round(10.0 + 7.5 * i, 2),
                    "customer_nb_tx_7d": i % 7,
                    "terminal_nb_tx_30d": 3 * i,
                },
            )
        )
    Case.objects.bulk_create(cases)
    if scores:
        shown_scores_create(dataset, [i / n_cases for i in range(n_cases)])
    if events:
        Event.objects.bulk_create(
            Event(
                dataset=dataset,
                entity_id=f"e{i % 5}",
                ts=T0 + timedelta(hours=i),
                fields={"amount": round(10.0 + 7.5 * i, 2), "terminal_id": f"t{i % 3}"},
            )
            for i in range(n_cases)
        )
    dataset.n_cases = n_cases
    dataset.n_seed_positive = n_seed
    dataset.n_events = n_cases if events else 0
    dataset.save()
    return dataset


def shown_scores_create(dataset: Dataset, scores: list[float]) -> ModelVersion:
    """Scores (row order) that lists and filters show, under a version of their own.

    The version is shown but not current; ``score_percentile`` is the share of cases scoring
    at most as high.
    """
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir="")
    dataset.n_cases = dataset.cases.count()
    case_scores_store(dataset=dataset, version=version, scores=np.asarray(scores))
    Dataset.objects.filter(pk=dataset.pk).update(scores_model=version)
    dataset.scores_model = version
    return version


def make_iteration(dataset: Dataset, *, number: int | None = None, status: str = "done"):
    if number is None:
        number = (
            dataset.iterations.order_by("-number").values_list("number", flat=True).first() or 0
        ) + 1
    return Iteration.objects.create(dataset=dataset, number=number, status=status)


def make_batch(
    dataset: Dataset,
    *,
    size: int = 5,
    cases: list[Case] | None = None,
    iteration: Iteration | None = None,
    required_answers: int = 1,
) -> list[BatchItem]:
    """A batch as the loop leaves it: open, unassigned items; its cases in pool state "shown".

    Without ``cases`` the batch takes the ``size`` highest-scoring unlabeled cases.
    """
    iteration = iteration or make_iteration(dataset)
    if cases is None:
        cases = list(
            dataset.cases.with_shown_scores(dataset)
            .filter(pool_state=PoolState.UNLABELED)
            .order_by("-score")[:size]
        )
    items = [
        BatchItem(
            iteration=iteration,
            case=case,
            position=position,
            score=case.score,
            uncertainty=round(1.0 - abs(2 * (case.score or 0.5) - 1), 4),
            cluster=position % 2,
            rank_in_cluster=position // 2,
            reason=f"uncertain (cluster {position % 2})",
            required_answers=required_answers,
        )
        for position, case in enumerate(cases)
    ]
    BatchItem.objects.bulk_create(items)
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(pool_state=PoolState.SHOWN)
    return list(BatchItem.objects.filter(iteration=iteration).order_by("position"))


def make_pattern(name: str = "fake merchant", description: str = "") -> PatternTag:
    return PatternTag.objects.create(name=name, description=description)


def make_vector_dataset(
    name: str, snapshot_root: Path, X, positive_rows, *, states: dict | None = None
) -> Dataset:
    """A ready dataset of numeric features ``x0..x{d-1}`` (rows of ``X``) with its snapshot.

    ``positive_rows`` are seed positives (pool state P); ``states`` maps more rows to a pool state.
    """
    import json

    import numpy as np

    X = np.asarray(X, dtype=np.float32)
    names = [f"x{j}" for j in range(X.shape[1])]
    schema = {"cases": {"numeric": names, "categorical": []}}
    dataset = Dataset.objects.create(
        name=name,
        schema=schema,
        feature_columns=names,
        status=Dataset.Status.READY,
        n_cases=len(X),
        n_seed_positive=len(positive_rows),
    )
    frame = pd.DataFrame(X, columns=names)
    frame.insert(0, "row", np.arange(len(X)))
    frame.insert(1, "case_id", [f"v{i:05d}" for i in range(len(X))])
    folder = Path(snapshot_root) / str(dataset.pk)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "cases.parquet", index=False)
    (folder / "schema.json").write_text(json.dumps(schema))
    dataset.snapshot_dir = str(folder)
    dataset.save(update_fields=["snapshot_dir"])
    seeds = {int(r) for r in positive_rows}
    states = {int(k): v for k, v in (states or {}).items()}
    Case.objects.bulk_create(
        [
            Case(
                dataset=dataset,
                row=i,
                case_id=f"v{i:05d}",
                entity_id=f"e{i % 50}",
                ts=T0 + timedelta(minutes=i),
                seed_positive=i in seeds,
                pool_state=states.get(i, PoolState.POSITIVE if i in seeds else PoolState.UNLABELED),
                features={n: float(v) for n, v in zip(names, X[i], strict=True)},
                score=float(i % 97) / 97,
            )
            for i in range(len(X))
        ],
        batch_size=2000,
    )
    return dataset

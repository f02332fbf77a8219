"""A real, small trained model version for a dataset made by ``factories.make_dataset``.

Trains :class:`learning.pu.TwoStepPU` on features from :func:`learning.featurespec.build_matrix`
and lays the artifacts out as a model version's folder (HELPERS.md): ``model.txt``,
``feature_spec.json``, ``positives.parquet``, ``params.json``, ``metrics.json``, ``scores.npy``.
The cases' scores are written the way the app scores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from labelapp.models import Dataset, ModelVersion
from labelapp.services.case_scores import case_scores_swap_in
from learning.featurespec import FeatureSpec, build_matrix
from learning.pu import TwoStepPU


def dataset_cases_frame(dataset: Dataset) -> pd.DataFrame:
    """The dataset's cases as raw rows in the dataset format (ordered by ``row``)."""
    rows = [
        {
            "row": c.row,
            "case_id": c.case_id,
            "entity_id": c.entity_id,
            "ts": pd.Timestamp(c.ts).tz_convert("UTC").tz_localize(None) if c.ts else pd.NaT,
            "seed_positive": int(c.seed_positive),
            **c.features,
        }
        for c in dataset.cases.order_by("row")
    ]
    return pd.DataFrame(rows)


def train_artifacts(dataset: Dataset, folder: Path, *, n_estimators: int = 20) -> Path:
    """Train on the dataset's cases (seed positives vs the rest) and write the model folder."""
    cases = dataset_cases_frame(dataset)
    numeric = [c for c in dataset.feature_columns if c in cases.columns]
    spec = FeatureSpec(
        numeric_columns=numeric,
        label_derived_columns=["entity_id"],
        label_derived_windows_days=[1.0, 7.0],
    )
    positives = cases.loc[cases["seed_positive"] == 1, spec.positive_columns]
    X = build_matrix(spec, cases, positives=positives)
    params = {
        "n_estimators": n_estimators,
        "em_rounds_step1": 1,
        "em_rounds_step2": 1,
        "cross_fit_folds": 0,
        "lgbm_params": {"min_child_samples": 2, "min_data_in_bin": 1},
        "random_state": 0,
    }
    model = TwoStepPU(**params).fit(X, cases["seed_positive"].to_numpy())
    folder.mkdir(parents=True, exist_ok=True)
    model.booster_.save_model(str(folder / "model.txt"))
    spec.save(folder / "feature_spec.json")
    positives.to_parquet(folder / "positives.parquet", index=False)
    (folder / "params.json").write_text(json.dumps(params, indent=2))
    metrics = {"n_train": len(cases), "n_positive": int(cases["seed_positive"].sum())}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    # Every case's score in row order, as the loop stores it (what promotion writes back).
    np.save(folder / "scores.npy", model.booster_.predict(X).astype(np.float32))
    return folder


def make_model_version(
    dataset: Dataset, folder: Path, *, current: bool = True, train: bool = True
) -> ModelVersion:
    """A model version whose artifacts lie in ``folder`` (trained there unless ``train=False``).

    With ``current`` the dataset points at it and every case gets the model's score, as the loop
    writes them (``Case.score``, ``Case.score_percentile``).
    """
    if train or not (Path(folder) / "model.txt").exists():
        train_artifacts(dataset, Path(folder))
    metrics = json.loads((Path(folder) / "metrics.json").read_text())
    params = json.loads((Path(folder) / "params.json").read_text())
    spec = FeatureSpec.load(Path(folder) / "feature_spec.json")
    version = ModelVersion.objects.create(
        dataset=dataset,
        artifact_dir=str(folder),
        params=params,
        metrics=metrics,
        data_snapshot={"n_cases": dataset.n_cases, "n_positive": metrics["n_positive"]},
        feature_names=spec.feature_names,
    )
    if current:
        dataset.current_model = version
        dataset.save(update_fields=["current_model"])
        write_scores(dataset, version)
    return version


def write_scores(dataset: Dataset, version: ModelVersion) -> np.ndarray:
    """Score every case with ``version`` (LightGBM on ``build_matrix``) and store the scores."""
    import lightgbm as lgb

    folder = Path(version.artifact_dir)
    spec = FeatureSpec.load(folder / "feature_spec.json")
    positives = pd.read_parquet(folder / "positives.parquet")
    cases = dataset_cases_frame(dataset)
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    scores = booster.predict(build_matrix(spec, cases, positives=positives))
    in_row_order = np.empty(len(scores), dtype=np.float64)
    in_row_order[cases["row"].to_numpy()] = scores
    case_scores_swap_in(dataset=dataset, version=version, scores=in_row_order)
    dataset.refresh_from_db()
    return scores

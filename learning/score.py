"""Score cases with an exported model, outside the app (no Django, no database).

Command line::

    python -m learning.score BUNDLE.zip --cases CASES.parquet [--events EVENTS.parquet] \\
        --out SCORES.csv

``CASES`` and ``EVENTS`` are in the dataset format (``.parquet`` or ``.csv``): raw values, as the
app imported them. The bundle is verified first (:mod:`learning.bundle`); a changed bundle is
refused with exit status 2 and a message saying what is wrong. ``SCORES.csv`` has ``case_id`` (or
the row number when the cases have none) and ``score``: the model's probability, computed by the
same :func:`learning.featurespec.build_matrix` the app uses, so the scores equal the app's.

:class:`ScoringModel` does the work for a model folder (a model version's artifact folder in the
app, or an unpacked bundle); the app's scoring endpoint and case explanations use it too.
When the model uses behavior-sequence embeddings, the bundle's ``encoder.pt`` embeds the cases'
events through :mod:`encoders` (imported only then: torch is not needed otherwise).

A model trained with the kNN feature (``feature_spec.json`` has ``knn_neighbors``) cannot compute
it: the share of known positives among a case's neighbours needs the whole pool the app indexed.
Its cases must carry a ``knn_positive_share`` column; without it the scorer stops with a message
that says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from learning.bundle import BundleError, extract_bundle
from learning.featurespec import FeatureSpec, build_matrix

MODEL_FILE = "model.txt"
SPEC_FILE = "feature_spec.json"
POSITIVES_FILE = "positives.parquet"
ENCODER_FILE = "encoder.pt"


class ScoringError(ValueError):
    """The cases cannot be scored by this model (missing columns, no events, ...)."""


def read_table(path: Path | str) -> pd.DataFrame:
    """A ``.parquet`` or ``.csv`` table; ``ts`` parsed as a datetime when it is text."""
    path = Path(path)
    if not path.exists():
        raise ScoringError(f"{path} does not exist")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise ScoringError(f"{path.name}: expected a .parquet or .csv file")
    return normalize_ts(frame)


def normalize_ts(frame: pd.DataFrame) -> pd.DataFrame:
    """Parse a text ``ts`` column as datetimes (CSV files and JSON carry times as text)."""
    if "ts" in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame["ts"]):
        if not pd.api.types.is_numeric_dtype(frame["ts"]):
            try:
                frame = frame.assign(ts=pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None))
            except (ValueError, TypeError) as exc:
                raise ScoringError(f"column ts: not a date/time ({exc})") from exc
    elif "ts" in frame.columns and getattr(frame["ts"].dt, "tz", None) is not None:
        frame = frame.assign(ts=frame["ts"].dt.tz_convert("UTC").dt.tz_localize(None))
    return frame


@dataclass
class ScoringModel:
    """A trained model and what it needs to turn raw cases into scores.

    Attributes
    ----------
    booster : lightgbm.Booster
    spec : FeatureSpec
    positives : DataFrame or None
        The positives the label-derived features count (``spec.positive_columns``).
    encoder_path : Path or None
        The encoder checkpoint, when the model uses embeddings.
    """

    booster: lgb.Booster
    spec: FeatureSpec
    positives: pd.DataFrame | None = None
    encoder_path: Path | None = None

    @classmethod
    def from_dir(cls, folder: Path | str) -> ScoringModel:
        """Load a model folder: ``model.txt``, ``feature_spec.json`` and their companions."""
        folder = Path(folder)
        for name in (MODEL_FILE, SPEC_FILE):
            if not (folder / name).is_file():
                raise ScoringError(f"{folder} has no {name}")
        spec = FeatureSpec.load(folder / SPEC_FILE)
        booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        if booster.num_feature() != len(spec.feature_names):
            raise ScoringError(
                f"the model has {booster.num_feature()} features but its feature spec "
                f"{len(spec.feature_names)}"
            )
        positives = None
        if (folder / POSITIVES_FILE).is_file():
            positives = normalize_ts(pd.read_parquet(folder / POSITIVES_FILE))
        elif spec.label_derived_columns:
            raise ScoringError(f"{folder} has no {POSITIVES_FILE}, which the features need")
        encoder = folder / ENCODER_FILE
        if spec.embedding_dim and not encoder.is_file():
            raise ScoringError(f"the model uses embeddings but {folder} has no {ENCODER_FILE}")
        return cls(booster, spec, positives, encoder if encoder.is_file() else None)

    # -- features --------------------------------------------------------------------------------
    def check_cases(self, cases: pd.DataFrame, events: pd.DataFrame | None) -> None:
        """Raise :class:`ScoringError` when ``cases`` (and ``events``) cannot be scored."""
        message = self.spec.missing_columns_message(cases.columns)
        if message:
            raise ScoringError(message)
        if self.spec.embedding_dim:
            if "entity_id" not in cases.columns:
                raise ScoringError("the model uses behavior sequences: cases need entity_id")
            if events is None or events.empty:
                raise ScoringError("the model uses behavior sequences: pass the cases' events")
            needed = [c for c in ("entity_id", "ts") if c not in events.columns]
            if needed:
                raise ScoringError(f"events lack columns: {', '.join(needed)}")

    def embed(self, cases: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
        """Behavior-sequence embeddings of ``cases``, shape (n_cases, spec.embedding_dim)."""
        from encoders.api import embed_dataset  # torch only when the model needs it

        with tempfile.TemporaryDirectory(prefix="pu-score-") as tmp:
            folder = Path(tmp)
            cases.to_parquet(folder / "cases.parquet", index=False)
            events.to_parquet(folder / "events.parquet", index=False)
            out = embed_dataset(self.encoder_path, folder, folder / "embeddings.npy", resume=False)
            return np.array(out, dtype=np.float32)

    def matrix(
        self,
        cases: pd.DataFrame,
        events: pd.DataFrame | None = None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """The feature matrix, shape (n_cases, n_features) float32.

        ``embeddings`` (already computed, rows aligned with ``cases``) saves embedding ``events``.
        """
        cases = normalize_ts(cases.reset_index(drop=True))
        if self.spec.embedding_dim and embeddings is None:
            self.check_cases(cases, events)
            embeddings = self.embed(cases, normalize_ts(events))
        elif message := self.spec.missing_columns_message(cases.columns):
            raise ScoringError(message)
        try:
            return build_matrix(self.spec, cases, positives=self.positives, embeddings=embeddings)
        except (ValueError, TypeError) as exc:
            raise ScoringError(str(exc)) from exc

    # -- scores ----------------------------------------------------------------------------------
    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        """Probabilities for a feature matrix, shape (n_cases,) float64."""
        return np.asarray(self.booster.predict(X), dtype=np.float64)

    def score(self, cases: pd.DataFrame, events: pd.DataFrame | None = None, **kw) -> np.ndarray:
        """The model's probability for each case, shape (n_cases,) float64."""
        if len(cases) == 0:
            return np.zeros(0)
        return self.score_matrix(self.matrix(cases, events, **kw))

    def contributions(
        self, cases: pd.DataFrame, events: pd.DataFrame | None = None, **kw
    ) -> np.ndarray:
        """SHAP contributions to the raw score, shape (n_cases, n_features + 1).

        The last column is the expected value; each row sums to the case's log-odds.
        """
        X = self.matrix(cases, events, **kw)
        return np.asarray(self.booster.predict(X, pred_contrib=True), dtype=np.float64)


def score_bundle(
    bundle: Path | str, cases: pd.DataFrame, events: pd.DataFrame | None = None
) -> np.ndarray:
    """Verify ``bundle``, then score ``cases``; shape (n_cases,) float64."""
    with tempfile.TemporaryDirectory(prefix="pu-bundle-") as tmp:
        extract_bundle(bundle, tmp)
        return ScoringModel.from_dir(tmp).score(cases, events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m learning.score",
        description="Score cases with an exported model bundle (verified before use).",
    )
    parser.add_argument("bundle", type=Path, help="the exported model bundle (.zip)")
    parser.add_argument("--cases", type=Path, required=True, help="cases .parquet or .csv")
    parser.add_argument("--events", type=Path, help="events .parquet or .csv (sequence models)")
    parser.add_argument("--out", type=Path, required=True, help="where to write SCORES.csv")
    args = parser.parse_args(argv)
    try:
        cases = read_table(args.cases)
        events = read_table(args.events) if args.events else None
        scores = score_bundle(args.bundle, cases, events)
    except BundleError as exc:
        print(f"error: bundle refused: {exc}", file=sys.stderr)
        return 2
    except ScoringError as exc:
        print(f"error: cannot score these cases: {exc}", file=sys.stderr)
        return 2
    ids = cases["case_id"] if "case_id" in cases.columns else pd.RangeIndex(len(cases))
    out = pd.DataFrame({"case_id": np.asarray(ids), "score": scores})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False, float_format="%.17g")
    print(f"scored {len(out)} cases -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

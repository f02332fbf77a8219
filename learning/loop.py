"""The active PU loop, composed once: pool state -> features -> two-step PU -> scores -> batch.

Everything that runs an iteration calls this module: the app's pipeline stages (a Celery
worker), the benchmark harness (:mod:`learning.bench.harness`) and the benchmark through the app
(``manage.py benchmark_app``). Its parameters live in one dataclass, :class:`LoopParams` (name,
default, range, help); the app's launch form, API serializer, ``run_iteration`` flags and the
exported ``params.json`` are generated from it or validated against it, so no parameter has two
defaults anywhere.

One step of the loop (:class:`ActiveLoop`):

1. :meth:`ActiveLoop.feature_spec` / :meth:`ActiveLoop.matrix`: the model's features for every
   pool case from the raw cases and the known positives (:mod:`learning.featurespec`);
2. :meth:`ActiveLoop.fit`: PU targets and weights from the pool states
   (:func:`learning.pool.training_targets`), then :class:`learning.pu.TwoStepPU`;
3. scores: ``model.predict_proba`` (the app fans this out over workers in chunks);
4. :meth:`ActiveLoop.select`: the next batch among the offerable cases, with a reason per case;
5. :meth:`ActiveLoop.positives_left`: how many positives are still in U, with an interval, from
   the expert's answers and held-out scores (:mod:`learning.prior`), for the stopping signals.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from learning.embedding_check import EmbeddingsCheck, embeddings_check
from learning.features import Dataset
from learning.featurespec import FeatureSpec, build_matrix, embedding_indices
from learning.noise import out_of_fold_scores
from learning.pool import CONFIRMED, NOT_CONFIRMED, U, offerable_mask, training_targets
from learning.prior import PositivesLeft, positives_left
from learning.pu import TwoStepPU
from learning.sampling import (
    BatchSelection,
    random_batch,
    select_batch,
    top_score_batch,
    uncertainty_batch,
)

# How the uncertain part measures uncertainty, and where its threshold sits (the score at the top
# 1% of all cases): fixed choices of the loop, not parameters.
UNCERTAINTY = "threshold"
TOP_FRACTION = 0.01
MIN_POSITIVES = 2
# Folds of the held-out scores the estimate of positives left calibrates (3 extra fits).
POSITIVES_LEFT_FOLDS = 3
# The estimate calibrates on the answers of the last two answered batches only. An older batch
# was drawn from a U that still held the positives it (and the batches after it) found: its
# confirmation rate at a rank describes that U, not today's, and every older batch kept made the
# estimate higher than the truth (docs/benchmarks.md, "Positives left: recent batches only").
POSITIVES_LEFT_BATCHES = 2

# Batch strategies the harness compares; the app always runs ``active``.
STRATEGIES = ("active", "diverse_only", "uncertainty_only", "random", "top_score")

# The embeddings setting: auto decides per iteration (learning.embedding_check).
EMBEDDINGS_SETTINGS = ("auto", "on", "off")
# Which of the encoder's columns the model takes (docs/benchmarks.md, "The case's own-event
# columns only"): own_event, the columns about the case's own event; all, the pooled vector too.
EMBEDDING_COLUMNS = ("own_event", "all")


def _param(
    default: Any,
    label: str,
    help: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    return field(
        default=default,
        metadata={
            "label": label,
            "help": help,
            "minimum": minimum,
            "maximum": maximum,
            "choices": choices,
        },
    )


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of the loop as forms, serializers and command flags see it."""

    name: str
    kind: type
    default: Any
    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def range_text(self) -> str:
        """The allowed range in words ("1 to 5,000", "auto, on or off"), empty for booleans."""
        if self.choices:
            return ", ".join(self.choices[:-1]) + " or " + self.choices[-1]
        if self.minimum is None or self.maximum is None:
            return ""
        return f"{_number(self.minimum)} to {_number(self.maximum)}"


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


class LoopParamsError(ValueError):
    """Parameters out of range; ``errors`` maps each bad parameter to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class LoopParams:
    """Every parameter of one iteration of the loop, with its default, range and help.

    The defaults are the harness's measured best (``docs/benchmarks.md``); the app launches
    with them unless an admin changes one.
    """

    batch_size: int = _param(100, "Batch size", "Cases in the experts' batch.", 1, 5000)
    n_clusters: int = _param(
        10,
        "Clusters",
        "K-Means clusters the uncertain part of the batch is spread over.",
        1,
        200,
    )
    pool_size: int = _param(
        0,
        "Uncertain candidates clustered",
        "How many of the most uncertain cases are clustered (M); 0: ten times the uncertain part "
        "of the batch.",
        0,
        1_000_000,
    )
    top_score_share: float = _param(
        0.5,
        "Top-score share",
        "Share of the batch taken as the highest scores; the rest is uncertain and diverse.",
        0.0,
        1.0,
    )
    random_share: float = _param(
        0.1,
        "Random share",
        "Share of the batch drawn at random from the unlabeled cases, after the top-score and "
        "uncertain parts: answers from every score band, which the estimate of positives left "
        "needs; they find fewer positives.",
        0.0,
        0.5,
    )
    spy_fraction: float = _param(
        0.15, "Spy fraction", "Share of the known positives hidden in U as spies.", 0.01, 0.5
    )
    spy_quantile: float = _param(
        0.1,
        "Spy quantile",
        "U cases scored below this quantile of the spies' scores become reliable negatives.",
        0.001,
        0.5,
    )
    em_rounds: int = _param(2, "EM rounds", "EM rounds in each of the two steps.", 1, 10)
    confirmed_weight: float = _param(
        5.0,
        "Weight of confirmed positives",
        "Sample weight of expert-confirmed positives (seed positives weigh 1).",
        1.0,
        100.0,
    )
    not_confirmed_weight: float = _param(
        1.0,
        "Weight of not-confirmed answers as negatives",
        "Cases an expert did not confirm train as known negatives (target 0 in every EM round) "
        "with this weight, counted like a sampled U case; 0: they go back to U as if never "
        "shown.",
        0.0,
        100.0,
    )
    n_estimators: int = _param(
        100,
        "Trees",
        "Trees of the final LightGBM model (the EM rounds use half as many, at least 10).",
        5,
        5000,
    )
    n_bags: int = _param(
        0,
        "Bags",
        "Two-step fits averaged into one model, each on its own spies, U sample and randomized "
        "trees. 0: automatic (5 below 200 known positives, one plain fit from 200 on). From 200 "
        "positives bags share one model's trees and U sample, so they cost what one fit costs.",
        0,
        20,
    )
    max_unlabeled: int = _param(
        100_000,
        "Unlabeled cases per EM round",
        "Train each EM round on a sample of at most this many U cases; 0: all of them.",
        0,
        100_000_000,
    )
    label_derived: bool = _param(
        True,
        "Label-derived entity features",
        "Known positives that shared the case's customer, terminal or other identifier in the "
        "days before it.",
    )
    entity_deviation: bool = _param(
        True,
        "Entity-deviation features",
        "Each numeric value against the mean of the same entity's earlier cases.",
    )
    use_embeddings: str = _param(
        "auto",
        "Behavior-sequence embeddings",
        "Auto Risk encoder embeddings as features (datasets with events only). auto: each "
        "iteration keeps them only where an out-of-fold check of the PU objective finds they "
        "help (the decision and its figures are in the iteration's log and the model version); "
        "on: always; off: never.",
        choices=EMBEDDINGS_SETTINGS,
    )
    embedding_columns: str = _param(
        "own_event",
        "Embedding columns in the model",
        "own_event: only the encoder's columns about the case's own event (how surprising its "
        "amount, terminal and other fields are for this customer's history, and each amount's "
        "z-score against what that history predicts); all: also the pooled vector of the "
        "history (64 columns), which made the loop's model noisier and 6-8x slower to train. "
        "Similar cases and the map use the whole vector either way.",
        choices=EMBEDDING_COLUMNS,
    )
    knn_feature: bool = _param(
        False,
        "kNN feature",
        "Share of known positives among each case's 10 nearest neighbours as a feature. "
        "Exported bundles then need that column supplied with the cases.",
    )
    encoder_minutes: float = _param(
        5.0,
        "Encoder pretraining minutes",
        "Pretraining budget when no encoder exists for the dataset yet.",
        0.05,
        240.0,
    )
    random_state: int = _param(
        0, "Random seed", "Seed of the spies, U sampling and clustering.", 0, 2**31 - 1
    )

    # -- description -----------------------------------------------------------------------------
    @classmethod
    def describe(cls) -> tuple[ParamInfo, ...]:
        """Every parameter, in declaration order."""
        kinds = {"int": int, "float": float, "bool": bool, "str": str}
        out = []
        for f in fields(cls):
            kind = f.type if isinstance(f.type, type) else kinds[str(f.type)]
            assert f.default is not MISSING
            out.append(ParamInfo(f.name, kind, f.default, **f.metadata))
        return tuple(out)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return asdict(cls())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- validation ------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, raw: dict[str, Any], *, base: dict[str, Any] | None = None) -> LoopParams:
        """Parameters from strings or values: types coerced, ranges and cross-field rules checked.

        ``None`` or ``""`` keeps the default (or ``base``'s value). Raises
        :class:`LoopParamsError` with one message per bad or unknown parameter.
        """
        infos = {info.name: info for info in cls.describe()}
        errors = {name: "unknown parameter" for name in sorted(set(raw) - set(infos))}
        values = {**cls.defaults(), **(base or {})}
        for name, value in raw.items():
            info = infos.get(name)
            if info is None or value is None or value == "":
                continue
            try:
                value = _coerce(info, value)
            except (TypeError, ValueError) as exc:
                errors[name] = (
                    str(exc) if "expected" in str(exc) else f"not a valid {info.kind.__name__}"
                )
                continue
            if info.minimum is not None and value < info.minimum:
                errors[name] = f"must be at least {_number(info.minimum)}"
            elif info.maximum is not None and value > info.maximum:
                errors[name] = f"must be at most {_number(info.maximum)}"
            else:
                values[name] = value
        if not errors:
            params = cls(**values)
            errors.update(params.cross_field_errors())
        if errors:
            raise LoopParamsError(errors)
        return params

    def cross_field_errors(self) -> dict[str, str]:
        errors = {}
        if self.n_clusters > self.batch_size:
            errors["n_clusters"] = "cannot exceed the batch size"
        if self.top_score_share + self.random_share > 1:
            errors["random_share"] = "top-score share + random share cannot exceed 1"
        if self.pool_size and self.pool_size < self.uncertain_part:
            errors["pool_size"] = (
                f"must be 0 or at least the batch's uncertain part ({self.uncertain_part})"
            )
        return errors

    # -- derived ---------------------------------------------------------------------------------
    @property
    def uncertain_part(self) -> int:
        n_top = int(round(self.batch_size * self.top_score_share))
        n_random = min(int(round(self.batch_size * self.random_share)), self.batch_size - n_top)
        return self.batch_size - n_top - n_random

    @property
    def n_estimators_em(self) -> int:
        return max(10, self.n_estimators // 2)

    def two_step(
        self, *, categorical_features: list[int] | None = None, n_jobs: int | None = None
    ) -> TwoStepPU:
        """The loop's PU model, unfitted."""
        return TwoStepPU(
            spy_fraction=self.spy_fraction,
            spy_quantile=self.spy_quantile,
            em_rounds_step1=self.em_rounds,
            em_rounds_step2=self.em_rounds,
            n_estimators=self.n_estimators,
            n_estimators_em=self.n_estimators_em,
            max_unlabeled=self.max_unlabeled or None,
            n_bags=self.n_bags or "auto",
            categorical_features=categorical_features or None,
            n_jobs=n_jobs,
            random_state=self.random_state,
        )


# The words a yes/no parameter takes; a choice parameter with "on"/"off" reads them too (the
# embeddings setting was a boolean).
_YES, _NO = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _coerce(info: ParamInfo, value: Any) -> Any:
    if info.choices:
        return _choice(info, value)
    if info.kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in _YES | _NO:
                raise ValueError("expected true or false")
            return lowered in _YES
        return bool(value)
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {value}")
    if info.kind is int:
        if isinstance(value, str):
            value = float(value.strip().replace(",", "").replace("_", ""))
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("expected a whole number")
        return int(value)
    value = float(value)
    if not np.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _choice(info: ParamInfo, value: Any) -> str:
    if isinstance(value, bool):
        value = "on" if value else "off"
    lowered = str(value).strip().lower()
    if lowered not in info.choices and {"on", "off"} <= set(info.choices):
        lowered = "on" if lowered in _YES else "off" if lowered in _NO else lowered
    if lowered not in info.choices:
        raise ValueError(f"expected {info.range_text()}")
    return lowered


class NotEnoughPositives(ValueError):
    """The pool holds fewer known positives than a PU model needs."""


class ActiveLoop:
    """One iteration's composition under ``params``; stateless between iterations.

    Parameters
    ----------
    params : LoopParams
    n_jobs : int, optional
        LightGBM threads (None: all cores).
    """

    def __init__(self, params: LoopParams, *, n_jobs: int | None = None):
        self.params = params
        self.n_jobs = n_jobs

    # -- features --------------------------------------------------------------------------------
    def feature_spec(
        self,
        dataset: Dataset,
        *,
        embedding_dim: int = 0,
        sequence_length: int | None = None,
        own_event_columns: int | None = None,
    ) -> FeatureSpec:
        """The feature spec of the pool ``dataset`` (categories as the pool has them).

        ``own_event_columns``: how many of the encoder vector's last columns are about the
        case's own event (:attr:`encoders.model.AutoRiskConfig.n_surprise`); with the
        ``own_event`` setting only those become model columns. None or 0 (an encoder without
        them, or an embeddings file of unknown make): every column.
        """
        columns = None
        if self.params.embedding_columns == "own_event" and own_event_columns and embedding_dim:
            first = embedding_dim - min(own_event_columns, embedding_dim)
            columns = list(range(first, embedding_dim))
        return FeatureSpec.from_dataset(
            dataset,
            label_derived=self.params.label_derived,
            entity_deviation=self.params.entity_deviation,
            embedding_dim=embedding_dim,
            sequence_length=sequence_length,
            embedding_columns=columns,
        )

    @staticmethod
    def positives_frame(
        spec: FeatureSpec, cases: pd.DataFrame, positive: np.ndarray
    ) -> pd.DataFrame:
        """The known positives' columns the label-derived features count."""
        return cases.loc[np.asarray(positive, bool), spec.positive_columns].reset_index(drop=True)

    @staticmethod
    def matrix(
        spec: FeatureSpec,
        cases: pd.DataFrame,
        positives: pd.DataFrame,
        *,
        embeddings: np.ndarray | None = None,
        deviation: np.ndarray | None = None,
    ) -> np.ndarray:
        """Feature matrix of ``cases``, shape (n_cases, len(spec.feature_names)) float32."""
        return build_matrix(
            spec, cases, positives=positives, embeddings=embeddings, deviation=deviation
        )

    # -- embeddings ------------------------------------------------------------------------------
    def wants_embeddings(self, *, has_events: bool) -> bool:
        """Whether the iteration computes embeddings at all (``on`` or ``auto``, with events)."""
        return has_events and self.params.use_embeddings != "off"

    def check_embeddings(
        self, X: np.ndarray, states: np.ndarray, spec: FeatureSpec
    ) -> EmbeddingsCheck | None:
        """The ``auto`` setting's decision on the pool (rows of ``X`` aligned with ``states``):
        do the embedding columns raise the held-out PU objective? None when the setting is not
        ``auto`` or ``spec`` has no embeddings."""
        if self.params.use_embeddings != "auto" or not spec.embedding_dim:
            return None
        s, weight = training_targets(states, confirmed_weight=self.params.confirmed_weight)
        _, weight = self._known_negatives(states, weight)
        states = np.asarray(states)
        return embeddings_check(
            X,
            s,
            embedding_indices(spec),
            sample_weight=weight,
            answered=(states == CONFIRMED) | (states == NOT_CONFIRMED),
            categorical_features=spec.categorical_indices or None,
            n_jobs=self.n_jobs,
            random_state=self.params.random_state,
        )

    @staticmethod
    def without_embeddings(spec: FeatureSpec, X: np.ndarray) -> tuple[FeatureSpec, np.ndarray]:
        """``spec`` and ``X`` with the embedding columns left out (the check said no)."""
        if not spec.embedding_dim:
            return spec, X
        kept = replace(spec, embedding_dim=0, embedding_columns=None, sequence_length=None)
        return kept, np.delete(X, embedding_indices(spec), axis=1)

    # -- model -----------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        states: np.ndarray,
        *,
        categorical_features: list[int] | None = None,
        progress=None,
    ) -> TwoStepPU:
        """Fit the two-step PU model on the pool (rows of ``X`` aligned with ``states``)."""
        s, weight = training_targets(states, confirmed_weight=self.params.confirmed_weight)
        if int(s.sum()) < MIN_POSITIVES:
            raise NotEnoughPositives(
                f"need at least {MIN_POSITIVES} known positives (seeds or confirmed) to train, "
                f"have {int(s.sum())}: define seed positives first"
            )
        model = self.params.two_step(categorical_features=categorical_features, n_jobs=self.n_jobs)
        kwargs = {"progress": progress} if progress is not None else {}
        negative, weight = self._known_negatives(states, weight)
        return model.fit(X, s, sample_weight=weight, known_negative=negative, **kwargs)

    def _known_negatives(
        self, states: np.ndarray, weight: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """The not-confirmed answers as known negatives, with their weight (or None when the
        loop puts them back into U)."""
        if self.params.not_confirmed_weight <= 0:
            return None, weight
        negative = np.asarray(states) == NOT_CONFIRMED
        weight = np.where(negative, self.params.not_confirmed_weight, weight)
        return negative, weight

    # -- batch -----------------------------------------------------------------------------------
    def select(
        self,
        scores: np.ndarray,
        X: np.ndarray,
        states: np.ndarray,
        *,
        iteration: int = 0,
        strategy: str = "active",
    ) -> BatchSelection:
        """The next batch among the offerable pool cases.

        Parameters
        ----------
        scores : ndarray of float, shape (n_pool,)
        X : ndarray of float, shape (n_pool, n_features)
            What the clusters are built on (missing values count as 0).
        states : ndarray of str, shape (n_pool,)
        iteration : int
            The iteration's number: the selection's randomness is ``random_state + iteration``,
            so each iteration draws afresh and a replay draws the same.
        strategy : one of :data:`STRATEGIES`
        """
        p = self.params
        mask = offerable_mask(states)
        rs = np.random.RandomState((p.random_state + iteration) % 2**32)
        if strategy in ("active", "diverse_only"):
            return select_batch(
                scores,
                X,
                p.batch_size,
                candidate_mask=mask,
                pool_size=p.pool_size or None,
                n_clusters=p.n_clusters,
                uncertainty=UNCERTAINTY,
                top_fraction=TOP_FRACTION,
                top_score_share=0.0 if strategy == "diverse_only" else p.top_score_share,
                random_share=p.random_share,
                random_state=rs,
            )
        if strategy == "uncertainty_only":
            idx = uncertainty_batch(
                scores,
                X,
                p.batch_size,
                candidate_mask=mask,
                uncertainty=UNCERTAINTY,
                top_fraction=TOP_FRACTION,
                random_state=rs,
            )
        elif strategy == "random":
            idx = random_batch(scores, X, p.batch_size, candidate_mask=mask, random_state=rs)
        elif strategy == "top_score":
            idx = top_score_batch(scores, X, p.batch_size, candidate_mask=mask, random_state=rs)
        else:
            raise ValueError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
        idx = np.asarray(idx, dtype=np.intp)
        return BatchSelection(
            indices=idx,
            uncertainty=np.zeros(len(idx)),
            cluster=np.full(len(idx), -1),
            rank_in_cluster=np.arange(len(idx)),
            reason=[f"{strategy} batch"] * len(idx),
        )

    # -- positives left --------------------------------------------------------------------------
    def positives_left(
        self,
        X: np.ndarray,
        states: np.ndarray,
        batches: list[np.ndarray],
        *,
        categorical_features: list[int] | None = None,
        expert_recall: float | None = None,
    ) -> PositivesLeft | None:
        """Positives still in U with an interval, or None before any batch was answered.

        Parameters
        ----------
        X : ndarray of float, shape (n_pool, n_features)
        states : ndarray of str, shape (n_pool,)
        batches : list of ndarray of int
            Each answered batch's pool positions, oldest first; only its ``confirmed`` and
            ``not_confirmed`` cases count (skipped and open ones are left out), and only the
            last :data:`POSITIVES_LEFT_BATCHES` batches with answers.
        expert_recall : float, optional
            P(confirm | positive), when known; else the estimate counts the positives an expert
            would confirm.
        """
        answered = [
            b[np.isin(states[b], (CONFIRMED, NOT_CONFIRMED))]
            for b in (np.asarray(b, dtype=np.intp) for b in batches)
        ]
        answered = [b for b in answered if len(b)][-POSITIVES_LEFT_BATCHES:]
        if not answered:
            return None
        s, weight = training_targets(states, confirmed_weight=self.params.confirmed_weight)
        held_out = out_of_fold_scores(
            X,
            s,
            estimator=self.params.two_step(
                categorical_features=categorical_features, n_jobs=self.n_jobs
            ),
            n_splits=POSITIVES_LEFT_FOLDS,
            sample_weight=weight,
            max_unlabeled=self.params.max_unlabeled or None,
            random_state=self.params.random_state,
        )
        return positives_left(
            held_out[states == U],
            batch_scores=[held_out[b] for b in answered],
            batch_confirmed=[states[b] == CONFIRMED for b in answered],
            expert_recall=expert_recall,
            random_state=self.params.random_state,
        )

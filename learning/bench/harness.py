"""Replay the active PU loop on a dataset with known truth, against baselines.

A simulated precision-first expert answers each batch: a true positive is confirmed with
probability ``expert_recall``, a negative with probability ``expert_false_positive``; everything
else is "not confirmed". The pool is the earlier ~75% of the cases (by ``ts``; for fraud_handbook
April-June) or a stratified random 75%; every metric is measured on the rest (the test part).

Run: ``python -m learning.bench.harness --data ../shared/data/adbench_thyroid --out bench-out/t``.
Writes ``report.json``, ``report.md`` and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from learning import pool
from learning.baselines import fit_gbrt, isolation_forest_scores
from learning.bench.positives_left import within_2x
from learning.evaluation import band_precision, ranking_metrics
from learning.features import (
    Dataset,
    dataset_from_frame,
    entity_deviation_features,
    load_dataset,
)
from learning.loop import ActiveLoop, LoopParams
from learning.noise import out_of_fold_scores

REQUIRED_METHODS = (
    "active_pu",
    "uncertainty_only",
    "random_batches",
    "naive_pu",
    "isolation_forest",
    "oracle",
)
# Ablations: each changes one thing of active_pu, to measure what that thing adds.
EXTRA_METHODS = (
    "two_step_pu",  # two-step PU on the seeds alone, no expert labels
    "naive_pu_hand_features",  # naive_pu without the label-derived entity features
    "top_score_batches",  # batches of the highest scores only
    "active_pu_naive_model",  # active_pu's batches, but a naive P-vs-U GBRT as the model
    "active_pu_no_entity_features",  # active_pu without label-derived entity features
    "active_pu_no_deviation_features",  # active_pu without the entity-deviation features
    "active_pu_diverse_only",  # the seed's batch: uncertain + K-Means, no top-score share
    # A ceiling, not a method: the GBRT on every true pool label with every feature active_pu
    # has, its label-derived features counted from the true pool positives.
    "oracle_all_features",
)


PROTOCOL_FIELDS = (
    "iterations",
    "seed_fraction",
    "expert_recall",
    "expert_false_positive",
    "seed",
    "quick",
    "n_jobs",
    "methods",
    "positives_left_methods",
    "positives_left_oracle",
)


@dataclass
class Settings:
    """Everything that shapes a benchmark run (written into report.json).

    The protocol (iterations, seeds, the simulated expert) lives here; everything the loop
    itself takes is a :class:`learning.loop.LoopParams`, the very object the app launches with.
    """

    iterations: int = 10
    seed_fraction: float = 0.1
    expert_recall: float = 0.9
    expert_false_positive: float = 0.0
    seed: int = 0
    quick: bool = False
    n_jobs: int | None = 1
    methods: tuple[str, ...] = field(default_factory=lambda: REQUIRED_METHODS + EXTRA_METHODS)
    # Methods whose curve reports the estimate of positives left after every batch (3 extra fits
    # per batch each).
    positives_left_methods: tuple[str, ...] = ("active_pu",)
    # Also report, beside each estimate, what a supervised model of every true pool label says
    # (out of fold): how close any estimate from these features could come (one k-fold fit).
    positives_left_oracle: bool = False
    loop: LoopParams = field(default_factory=LoopParams)

    @classmethod
    def from_kwargs(cls, **kwargs) -> Settings:
        """Protocol fields and loop parameters by name, in one flat set of keywords.

        The loop's ``random_state`` follows ``seed`` unless given.
        """
        loop_names = set(LoopParams.names())
        unknown = set(kwargs) - loop_names - set(PROTOCOL_FIELDS)
        if unknown:
            raise TypeError(f"unknown benchmark settings: {sorted(unknown)}")
        loop_raw = {k: v for k, v in kwargs.items() if k in loop_names}
        loop_raw.setdefault("random_state", kwargs.get("seed", 0))
        protocol = {k: v for k, v in kwargs.items() if k in PROTOCOL_FIELDS}
        for key in ("methods", "positives_left_methods"):
            if key in protocol:
                protocol[key] = tuple(protocol[key])
        return cls(**protocol, loop=LoopParams.from_mapping(loop_raw))

    @property
    def batch_size(self) -> int:
        return self.loop.batch_size

    def as_report(self) -> dict:
        """Flat settings for report.json: the protocol, then every loop parameter."""
        out = {k: getattr(self, k) for k in PROTOCOL_FIELDS}
        out["methods"] = list(self.methods)
        out["positives_left_methods"] = list(self.positives_left_methods)
        return {**out, **self.loop.to_dict()}


@dataclass
class Split:
    pool: np.ndarray  # indices of pool cases, shape (n_pool,)
    test: np.ndarray  # indices of test cases, shape (n_test,)
    rule: str


def split_cases(ds: Dataset, *, seed: int) -> Split:
    """Earlier ~75% (cut at a day boundary) as pool where cases have ``ts``, else stratified."""
    n = ds.n_cases
    if ds.ts is not None:
        ts = pd.Series(ds.ts)
        cut = (ts.min() + 0.75 * (ts.max() - ts.min())).floor("D")
        is_pool = (ts < cut).to_numpy()
        return Split(np.flatnonzero(is_pool), np.flatnonzero(~is_pool), f"ts < {cut.date()}")
    pool_idx, test_idx = train_test_split(
        np.arange(n), test_size=0.25, stratify=ds.labels, random_state=seed
    )
    return Split(np.sort(pool_idx), np.sort(test_idx), "stratified random 75/25")


def seed_positives(ds: Dataset, split: Split, *, fraction: float, seed: int) -> np.ndarray:
    """Seed positives as a mask over all cases: ``seed_positive`` where present, else a random
    ``fraction`` of the pool's true positives (the test part then gets none)."""
    if ds.seed_positive is not None:
        return ds.seed_positive.copy()
    rng = np.random.RandomState(seed)
    positives = split.pool[ds.labels[split.pool] == 1]
    n = max(1, int(round(fraction * len(positives))))
    mask = np.zeros(ds.n_cases, dtype=bool)
    mask[rng.choice(positives, size=n, replace=False)] = True
    return mask


def expert_answers(ds: Dataset, settings: Settings) -> np.ndarray:
    """Whether the simulated expert confirms each case, shape (n_cases,) bool.

    One uniform draw per case, shared by every method (and by ``benchmark_app``): the expert
    answers a case the same way whichever strategy showed it.
    """
    y = ds.labels.astype(int)
    draw = np.random.RandomState(settings.seed + 1).random_sample(ds.n_cases)
    return np.where(y == 1, draw < settings.expert_recall, draw < settings.expert_false_positive)


def pool_schema(ds: Dataset) -> dict:
    return {"cases": {"numeric": ds.numeric_columns, "categorical": ds.categorical_columns}}


class Harness:
    """Shared state of one run: data, split, features, the simulated expert.

    Features are built as the app builds them: a :class:`learning.featurespec.FeatureSpec` of
    the pool alone (categories as the pool has them) applied to every case, the label-derived
    columns counting the known positives (the pool's P and the test part's own seeds).
    """

    def __init__(
        self,
        ds: Dataset,
        settings: Settings,
        embeddings: np.ndarray | None,
        log,
        *,
        split: Split | None = None,
        own_event_columns: int | None = None,
    ):
        self.ds, self.settings, self.log = ds, settings, log
        # How many of the embeddings' last columns are the case's own-event columns (the
        # ``own_event`` setting keeps only those); None: unknown, every column is used.
        self.own_event_columns = own_event_columns
        self.y = ds.labels.astype(int)
        self.split = split if split is not None else split_cases(ds, seed=settings.seed)
        self.seeds = seed_positives(
            ds, self.split, fraction=settings.seed_fraction, seed=settings.seed
        )
        self.raw = ds.raw_cases()
        self.pool_dataset = dataset_from_frame(
            ds.name, self.raw.iloc[self.split.pool].reset_index(drop=True), pool_schema(ds)
        )
        self.entity_columns = self.pool_dataset.identifier_columns() if ds.ts is not None else []
        self.embeddings = embeddings
        if embeddings is not None and len(embeddings) != ds.n_cases:
            raise ValueError(f"embeddings have {len(embeddings)} rows, cases {ds.n_cases}")
        self._deviation: dict[tuple, np.ndarray] = {}
        # Each active method's last scores of every case, shape (n_cases,) (learning.bench.rules
        # fits rules to them on the pool).
        self.final_scores: dict[str, np.ndarray] = {}
        self.expert_confirms = expert_answers(ds, settings)
        self.pool_seed = self.seeds[self.split.pool]
        # Known positives outside the pool at scoring time: the test part's own seeds (a rule
        # fires in real time). Never the truth.
        self.test_seed_mask = np.zeros(ds.n_cases, bool)
        self.test_seed_mask[self.split.test] = self.seeds[self.split.test]
        self._supervised: np.ndarray | None = None

    def supervised_pool_probabilities(self) -> np.ndarray:
        """P(positive | x) for every pool case from a GBRT fitted on every true pool label, out
        of fold (5 folds, hand and entity-deviation features, label-derived ones counting the
        seeds only), shape (n_pool,): the positives-left oracle. Computed once per run."""
        if self._supervised is None:
            loop = self.loop_for("active_pu")
            X_all, _ = self.features(loop, self.pool_seed)
            self._supervised = out_of_fold_scores(
                np.nan_to_num(X_all[self.split.pool], nan=0.0),
                self.y[self.split.pool],
                n_splits=5,
                random_state=self.settings.seed,
            )
        return self._supervised

    def loop_for(self, name: str) -> ActiveLoop:
        """The loop a method runs: the settings' loop, with one thing changed for an ablation."""
        p = self.settings.loop
        if name in ("active_pu_no_entity_features",):
            p = replace(p, label_derived=False)
        elif name == "active_pu_no_deviation_features":
            p = replace(p, entity_deviation=False)
        elif name == "active_pu_no_embeddings":
            p = replace(p, use_embeddings="off")
        elif name in ("naive_pu_hand_features", "oracle"):
            p = replace(p, label_derived=False, entity_deviation=False)
        return ActiveLoop(p, n_jobs=self.settings.n_jobs)

    def features(self, loop: ActiveLoop, pool_positive: np.ndarray, *, embeddings: bool = False):
        """Feature matrix for all cases, shape (n_cases, n_features), and its spec."""
        emb = self.embeddings if embeddings else None
        spec = loop.feature_spec(
            self.pool_dataset,
            embedding_dim=0 if emb is None else int(emb.shape[1]),
            own_event_columns=self.own_event_columns,
        )
        known = self.test_seed_mask.copy()
        known[self.split.pool] = pool_positive
        key = tuple(spec.deviation_columns)
        if key and key not in self._deviation:  # label-free: computed once per column set
            self._deviation[key] = self._deviation_features(spec)
        X = loop.matrix(
            spec,
            self.raw,
            loop.positives_frame(spec, self.raw, known),
            embeddings=emb,
            deviation=self._deviation.get(key),
        )
        return X, spec

    def _deviation_features(self, spec) -> np.ndarray:
        """Entity-deviation columns as the app has them: the pool's computed over the pool alone
        (what the app imported), the test part's over every case (a scored case comes with its
        entity's history), shape (n_cases, n_deviation) float32."""

        def deviation(cases: pd.DataFrame) -> np.ndarray:
            return entity_deviation_features(
                cases, spec.deviation_columns, entity_column=spec.entity_column
            ).to_numpy(np.float32)

        out = deviation(self.raw)
        out[self.split.pool] = deviation(self.raw.iloc[self.split.pool].reset_index(drop=True))
        return out

    def test_metrics(self, scores_test: np.ndarray) -> dict:
        """Ranking metrics on the test part, plus ``band_precision_unknown``: the bands over the
        test cases nobody knew at scoring time (all of them but the test part's own seeds)."""
        y_test = self.y[self.split.test]
        metrics = ranking_metrics(y_test, scores_test)
        unknown = ~self.test_seed_mask[self.split.test]
        metrics["band_precision_unknown"] = band_precision(y_test[unknown], scores_test[unknown])
        return metrics


def _naive_scores(h: Harness, loop: ActiveLoop, spec, X_pool, s, w, X_all) -> np.ndarray:
    """A plain P-vs-U (or truth) GBRT with the loop's trees, scoring ``X_all``."""
    booster = fit_gbrt(
        X_pool,
        s,
        sample_weight=w,
        categorical_features=spec.categorical_indices or None,
        n_estimators=loop.params.n_estimators,
        n_jobs=h.settings.n_jobs,
        seed=h.settings.seed,
    )
    return booster.predict(X_all)


STRATEGY_OF = {
    "active_pu": "active",
    "active_pu_no_embeddings": "active",
    "active_pu_naive_model": "active",
    "active_pu_no_entity_features": "active",
    "active_pu_no_deviation_features": "active",
    "active_pu_diverse_only": "diverse_only",
    "uncertainty_only": "uncertainty_only",
    "random_batches": "random",
    "top_score_batches": "top_score",
}


def run_active(h: Harness, name: str) -> tuple[dict, list[dict], np.ndarray]:
    """Replay the loop for one active method; returns its metrics, curve and test scores."""
    st = h.settings
    loop = h.loop_for(name)
    use_emb = loop.wants_embeddings(has_events=h.embeddings is not None)
    pool_idx, test_idx = h.split.pool, h.split.test
    states = pool.initial_states(h.pool_seed)
    curve, t0, labels = [], time.perf_counter(), 0
    batches: list[np.ndarray] = []
    checks: list[dict] = []
    for it in range(st.iterations + 1):
        X_all, spec = h.features(loop, pool.positive_mask(states), embeddings=use_emb)
        check = loop.check_embeddings(X_all[pool_idx], states, spec)
        if check is not None:
            h.log(f"  {name}: iteration {it}: {check.summary()}")
            checks.append(check.to_dict())
            if not check.use:
                spec, X_all = loop.without_embeddings(spec, X_all)
        if name == "active_pu_naive_model":
            s, w = pool.training_targets(states, confirmed_weight=loop.params.confirmed_weight)
            scores = _naive_scores(h, loop, spec, X_all[pool_idx], s, w, X_all)
        else:
            model = loop.fit(X_all[pool_idx], states, categorical_features=spec.categorical_indices)
            scores = model.predict_proba(X_all)[:, 1]
        found = int(((states == pool.CONFIRMED) & (h.y[pool_idx] == 1)).sum())
        pr_auc = h.test_metrics(scores[test_idx])["pr_auc"]
        curve.append({"labels": labels, "positives_found": found, "pr_auc": pr_auc})
        if use_emb:
            curve[-1]["embeddings_used"] = bool(spec.embedding_dim)
        if name in st.positives_left_methods and batches:
            curve[-1]["positives_left"] = _positives_left_point(
                h, loop, spec, X_all[pool_idx], states, batches
            )
        h.log(
            f"  {name}: iteration {it}/{st.iterations}, labels {labels}, positives found "
            f"{found}, test PR-AUC {pr_auc:.3f} ({time.perf_counter() - t0:.0f} s)"
        )
        if it == st.iterations:
            break
        X_pool = np.nan_to_num(X_all[pool_idx], nan=0.0)
        batch = loop.select(
            scores[pool_idx], X_pool, states, iteration=it + 1, strategy=STRATEGY_OF[name]
        ).indices
        answers = np.where(h.expert_confirms[pool_idx[batch]], pool.CONFIRMED, pool.NOT_CONFIRMED)
        states = pool.apply_answers(pool.mark_shown(states, batch), batch, answers)
        batches.append(batch)
        labels += len(batch)
    h.final_scores[name] = scores
    metrics = h.test_metrics(scores[test_idx])
    confirmed = states == pool.CONFIRMED
    metrics.update(
        labels_used=labels,
        positives_found=int((confirmed & (h.y[pool_idx] == 1)).sum()),
        confirmed=int(confirmed.sum()),
        seconds=time.perf_counter() - t0,
    )
    if checks:
        metrics["embeddings_checks"] = {
            "used": sum(c["use"] for c in checks),
            "of": len(checks),
            "seconds": round(sum(c["seconds"] for c in checks), 1),
            "gains": [c["gain"] for c in checks],
        }
    return metrics, curve, scores[test_idx]


def _positives_left_point(h: Harness, loop: ActiveLoop, spec, X_pool, states, batches) -> dict:
    """The loop's estimate of positives left in U, its interval, and the truth (the simulated
    expert's labels: true positives never shown)."""
    est = loop.positives_left(
        X_pool,
        states,
        batches,
        categorical_features=spec.categorical_indices,
        expert_recall=h.settings.expert_recall,
    )
    truth = int(((states == pool.U) & (h.y[h.split.pool] == 1)).sum())
    if est is None:
        return {"truth": truth}
    oracle = {}
    if h.settings.positives_left_oracle:
        p_u = h.supervised_pool_probabilities()[states == pool.U]
        oracle_point = float(p_u.sum())
        oracle = {
            "oracle_point": round(oracle_point, 2),
            "oracle_within_2x": bool(within_2x(oracle_point, truth)),
            "oracle_chance_within_2x": round(chance_within_2x(p_u, seed=h.settings.seed), 3),
        }
    return {
        "point": round(float(est.point), 2),
        "refit_median": round(float(est.details.get("refit_median", est.point)), 2),
        "refit_geometric_mean": round(float(est.details.get("refit_geometric_mean", est.point)), 2),
        "plug_in": round(float(est.details.get("plug_in", est.point)), 2),
        "low": round(float(est.low), 2),
        "high": round(float(est.high), 2),
        "truth": truth,
        "inside": bool(est.low <= truth <= est.high),
        "within_2x": bool(within_2x(float(est.point), truth)),
        **oracle,
    }


def chance_within_2x(p: np.ndarray, *, seed: int = 0, draws: int = 400) -> float:
    """How often a count of positives drawn case by case with probabilities ``p`` lies within 2x
    of its expectation ``p.sum()``: how often a model whose probabilities were exactly right
    would be within 2x of the truth, by chance alone (Monte Carlo; cases under 1e-3 together as
    one Poisson count)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype=np.float64)
    big, small = p[p >= 1e-3], float(p[p < 1e-3].sum())
    counts = rng.poisson(small, size=draws).astype(np.float64)
    for row in range(draws):
        counts[row] += np.count_nonzero(rng.random(len(big)) < big)
    expected = float(p.sum())
    return float(np.mean([within_2x(expected, float(c)) for c in counts]))


def run_static(h: Harness, name: str) -> tuple[dict, np.ndarray]:
    """One of the label-free baselines or the oracle; returns metrics and test scores."""
    st = h.settings
    t0 = time.perf_counter()
    pool_idx, test_idx = h.split.pool, h.split.test
    loop = h.loop_for(name)
    if name == "isolation_forest":
        hand = h.ds.feature_frame().to_numpy(dtype=np.float32)
        scores_test = isolation_forest_scores(
            hand[pool_idx], hand[test_idx], random_state=st.seed, n_jobs=st.n_jobs
        )
    elif name in ("oracle", "oracle_all_features"):
        # oracle: the same GBRT on every true pool label, hand features only; the ceiling
        # oracle_all_features has every feature, its label-derived ones counting true positives.
        truth = h.y[pool_idx] == 1
        X_all, spec = h.features(loop, h.pool_seed | truth, embeddings=name != "oracle")
        scores_test = _naive_scores(
            h, loop, spec, X_all[pool_idx], h.y[pool_idx], None, X_all[test_idx]
        )
    else:
        X_all, spec = h.features(loop, h.pool_seed)
        if name == "two_step_pu":
            states = pool.initial_states(h.pool_seed)
            model = loop.fit(X_all[pool_idx], states, categorical_features=spec.categorical_indices)
            scores_test = model.predict_proba(X_all[test_idx])[:, 1]
        else:
            s = h.pool_seed.astype(int)
            scores_test = _naive_scores(h, loop, spec, X_all[pool_idx], s, None, X_all[test_idx])
    metrics = h.test_metrics(scores_test)
    metrics.update(labels_used=0, positives_found=0, confirmed=0, seconds=time.perf_counter() - t0)
    return metrics, scores_test


ACTIVE = set(STRATEGY_OF)


def run_benchmark(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    embeddings: np.ndarray | None = None,
    own_event_columns: int | None = None,
    log: Callable[[str], None] = print,
    **settings,
) -> dict:
    """Run every method on one dataset and write report.json, report.md and plots.

    Parameters
    ----------
    data_dir : str or Path
        A dataset folder with a ``label`` column.
    out_dir : str or Path
        Created if missing.
    embeddings : ndarray of float32, shape (n_cases, d), optional
        One row per case in cases order; ``active_pu`` then uses them (as its
        ``use_embeddings`` setting says) and ``active_pu_no_embeddings`` runs without (added to
        the default methods; named ``methods`` run as given).
    own_event_columns : int, optional
        How many of the embeddings' last columns are about the case's own event
        (:func:`own_event_columns_beside`); the loop's ``embedding_columns`` setting
        ``own_event`` keeps only those. None: every column.
    log : callable
        Progress lines go here.
    **settings
        Fields of :class:`Settings`.

    Returns
    -------
    dict
        The report (as written to report.json).
    """
    st = Settings.from_kwargs(**settings)
    if st.quick:
        st.iterations = min(st.iterations, 3)
        st.loop = replace(
            st.loop,
            batch_size=min(st.loop.batch_size, 50),
            n_clusters=min(st.loop.n_clusters, st.loop.batch_size, 50),
            n_estimators=min(st.loop.n_estimators, 50),
        )
    methods = list(st.methods)
    if (
        embeddings is not None
        and "methods" not in settings
        and "active_pu_no_embeddings" not in methods
    ):
        methods.insert(1, "active_pu_no_embeddings")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the simulated expert needs the truth")
    h = Harness(ds, st, embeddings, log, own_event_columns=own_event_columns)
    for twin in ("active_pu_no_entity_features", "naive_pu_hand_features"):
        if not h.entity_columns and twin in methods:
            methods.remove(twin)  # identical to its entity-feature twin here
    test_y = h.y[h.split.test]
    log(
        f"{ds.name}: {ds.n_cases} cases, pool {len(h.split.pool)} ({h.split.rule}), test "
        f"{len(h.split.test)} with {int(test_y.sum())} positives; {int(h.pool_seed.sum())} seed "
        f"positives in the pool; entity features on {h.entity_columns or 'nothing'}"
    )
    report = report_head(h, st, embeddings)
    test_scores = {}
    for name in methods:
        log(f"[{time.perf_counter() - t_start:.0f} s] {name} ...")
        if name in ACTIVE:
            metrics, curve, scores = run_active(h, name)
            report["curves"][name] = curve
        else:
            metrics, scores = run_static(h, name)
        report["methods"][name] = metrics
        test_scores[name] = scores
        np.savez_compressed(out / "test_scores.npz", y=test_y, **test_scores)
        log(
            f"  {name}: PR-AUC {metrics['pr_auc']:.3f}, recall@p0.8 "
            f"{metrics['recall_at_precision']['0.8']:.3f}, positives found "
            f"{metrics['positives_found']} ({metrics['seconds']:.0f} s)"
        )
        _write(report, out)
    report["positives_left"] = positives_left_summary(report["curves"])
    report["seconds_total"] = time.perf_counter() - t_start
    _write(report, out)
    _plots(report, test_y, test_scores, out)
    log(
        f"wrote {out / 'report.json'}, {out / 'report.md'} and plots "
        f"({report['seconds_total']:.0f} s)"
    )
    return report


def report_head(h: Harness, st: Settings, embeddings: np.ndarray | None = None) -> dict:
    """The report's description of the run, before any method's figures."""
    test_y = h.y[h.split.test]
    return {
        "dataset": h.ds.name,
        "n_pool": int(len(h.split.pool)),
        "n_test": int(len(h.split.test)),
        "test_positives": int(test_y.sum()),
        "pool_positives": int(h.y[h.split.pool].sum()),
        "seed_positives_in_pool": int(h.pool_seed.sum()),
        "split": h.split.rule,
        "entity_feature_columns": h.entity_columns,
        "embeddings": None if embeddings is None else int(embeddings.shape[1]),
        "settings": st.as_report(),
        "methods": {},
        "curves": {},
    }


def positives_left_summary(curves: dict) -> dict:
    """Per method: checkpoints with an estimate, the share whose interval holds the truth, and
    the share whose point is within 2x of it (both counted at least 1)."""
    out = {}
    for name, curve in curves.items():
        points = [c["positives_left"] for c in curve if "point" in c.get("positives_left", {})]
        if points:
            shares = {"inside_interval": "inside", "within_2x": "within_2x"}
            if all("oracle_point" in p for p in points):
                shares |= {k: k for k in ("oracle_within_2x", "oracle_chance_within_2x")}
            out[name] = {"checkpoints": len(points)} | {
                out_key: round(sum(p[key] for p in points) / len(points), 3)
                for out_key, key in shares.items()
            }
    return out


def merge_reports(parts: list[Path], out: Path) -> dict:
    """Merge runs of the same dataset and settings that each ran some methods (in parallel).

    Every part folder holds ``report.json`` and ``test_scores.npz``; the merged report, tables
    and plots are written to ``out``.
    """
    out.mkdir(parents=True, exist_ok=True)
    merged: dict | None = None
    test_scores: dict[str, np.ndarray] = {}
    for part in parts:
        report = json.loads((Path(part) / "report.json").read_text())
        scores = np.load(Path(part) / "test_scores.npz")
        if merged is None:
            merged = {**report, "methods": {}, "curves": {}, "seconds_total": 0.0}
        elif report["settings"] | {"methods": None} != merged["settings"] | {"methods": None}:
            raise ValueError(f"{part} ran with other settings")
        merged["methods"].update(report["methods"])
        merged["curves"].update(report["curves"])
        merged["seconds_total"] += report.get("seconds_total", 0.0)
        test_y = scores["y"]
        test_scores.update({k: scores[k] for k in scores.files if k != "y"})
    order = [
        m
        for m in (*REQUIRED_METHODS, "active_pu_no_embeddings", *EXTRA_METHODS)
        if m in merged["methods"]
    ]
    merged["methods"] = {m: merged["methods"][m] for m in order}
    merged["settings"]["methods"] = order
    _write(merged, out)
    _plots(merged, test_y, {m: test_scores[m] for m in order}, out)
    return merged


def _write(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))


def report_markdown(report: dict) -> str:
    """The report's tables as Markdown."""
    lines = [
        f"# Benchmark: {report['dataset']}",
        "",
        f"Pool {report['n_pool']} cases ({report['split']}), test {report['n_test']} with "
        f"{report['test_positives']} positives; {report['seed_positives_in_pool']} seed "
        f"positives in the pool.",
        "",
        "| method | PR-AUC | ROC-AUC | R@P0.5 | R@P0.8 | R@P0.9 | P 99-100 | P 95-99 | P 90-95 "
        "| P 85-90 | labels | positives found | seconds |",
        "|---|" + "---:|" * 12,
    ]
    for name, m in report["methods"].items():
        r, b = m["recall_at_precision"], m["band_precision"]
        lines.append(
            f"| {name} | {m['pr_auc']:.3f} | {m['roc_auc']:.3f} | {r['0.5']:.3f} | {r['0.8']:.3f} "
            f"| {r['0.9']:.3f} | {b['99-100']:.3f} | {b['95-99']:.3f} | {b['90-95']:.3f} "
            f"| {b['85-90']:.3f} | {m['labels_used']} | {m['positives_found']} "
            f"| {m['seconds']:.0f} |"
        )
    lines += [
        "",
        "## Cumulative precision, and the bands over the cases nobody knew",
        "",
        "Top k%: precision among the top-scored k% of the test part (the bands are the slopes "
        "between these). Unknown bands: the band precision over the test cases that were not "
        "known positives at scoring time (the test part without its own seeds).",
        "",
        "| method | top 1% | top 5% | top 10% | top 15% | unknown 99-100 | unknown 95-99 "
        "| unknown 90-95 | unknown 85-90 |",
        "|---|" + "---:|" * 8,
    ]
    for name, m in report["methods"].items():
        top, unk = m.get("precision_at_top"), m.get("band_precision_unknown")
        if not top or not unk:
            continue
        cells = [top[k] for k in ("1", "5", "10", "15")]
        cells += [unk[k] for k in ("99-100", "95-99", "90-95", "85-90")]
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    if report["curves"]:
        lines += ["", "## Positives found and test PR-AUC per labels spent", ""]
        names = list(report["curves"])
        lines.append("| labels | " + " | ".join(names) + " |")
        lines.append("|---:|" + "---:|" * len(names))
        for i, point in enumerate(report["curves"][names[0]]):
            cells = []
            for name in names:
                c = report["curves"][name]
                auc = c[i]["pr_auc"] if i < len(c) else None
                auc_text = "-" if auc is None else f"{auc:.3f}"
                cells.append(f"{c[i]['positives_found']} / {auc_text}" if i < len(c) else "")
            lines.append(f"| {point['labels']} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Cells: positives found / test PR-AUC.")
    for name, curve in report["curves"].items():
        points = [c for c in curve if "point" in c.get("positives_left", {})]
        if not points:
            continue
        oracle = all("oracle_point" in c["positives_left"] for c in points)
        lines += [
            "",
            f"## Positives left in U after each batch ({name})",
            "",
            "| labels | estimate | interval | truth |"
            + (" supervised oracle | its chance within 2x |" if oracle else ""),
            "|---:|---:|---|---:|" + ("---:|---:|" if oracle else ""),
        ]
        for c in points:
            p = c["positives_left"]
            row = (
                f"| {c['labels']} | {p['point']:.0f} | {p['low']:.0f}-{p['high']:.0f} "
                f"| {p['truth']} |"
            )
            if oracle:
                row += f" {p['oracle_point']:.0f} | {p['oracle_chance_within_2x']:.2f} |"
            lines.append(row)
    lines += ["", "Settings: `" + json.dumps(report["settings"]) + "`", ""]
    return "\n".join(lines)


def _plots(report: dict, test_y: np.ndarray, test_scores: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in report["curves"].items():
        ax.plot(
            [p["labels"] for p in curve],
            [p["positives_found"] for p in curve],
            marker="o",
            label=name,
        )
    ax.set(
        xlabel="labels spent",
        ylabel="true positives confirmed",
        title=f"{report['dataset']}: positives found per label spent",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "positives_found.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, scores in test_scores.items():
        prec, rec, _ = precision_recall_curve(test_y, scores)
        ax.plot(rec, prec, label=f"{name} ({report['methods'][name]['pr_auc']:.3f})", lw=1.2)
    ax.set(xlabel="recall", ylabel="precision", title=f"{report['dataset']}: test PR curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "precision_recall.png", dpi=110)
    plt.close(fig)

    bands = ["99-100", "95-99", "90-95", "85-90"]
    names = list(report["methods"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [report["methods"][name]["band_precision"][b] for b in bands]
        ax.bar(np.arange(4) + i * width, vals, width, label=name)
    ax.set_xticks(np.arange(4) + 0.4 - width / 2, bands)
    ax.set(
        xlabel="top-score percentile band",
        ylabel="precision",
        title=f"{report['dataset']}: precision per band",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "band_precision.png", dpi=110)
    plt.close(fig)


def add_loop_arguments(parser: argparse.ArgumentParser, *, defaults: dict | None = None) -> None:
    """One ``--flag`` per :class:`learning.loop.LoopParams` field, with its help and range.

    ``defaults`` overrides a shown default (the harness's ``random_state`` follows ``--seed``).
    Values are parsed by :meth:`LoopParams.from_mapping`, so flags, forms and the API agree.
    """
    for info in LoopParams.describe():
        default = (defaults or {}).get(info.name, info.default)
        extra = f" ({info.range_text()})" if info.range_text() else " (true or false)"
        parser.add_argument(
            info.flag,
            dest=info.name,
            default=None,
            metavar="{" + ",".join(info.choices) + "}"
            if info.choices
            else info.kind.__name__.upper(),
            help=f"{info.help}{extra}; default {default}",
        )


def loop_arguments(args: argparse.Namespace) -> dict:
    """The loop parameters given on the command line (unset ones left out)."""
    return {n: getattr(args, n) for n in LoopParams.names() if getattr(args, n, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", default=Path("bench-out"), type=Path)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--seed-fraction", type=float, default=0.1)
    p.add_argument("--expert-recall", type=float, default=0.9)
    p.add_argument("--expert-false-positive", type=float, default=0.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument(
        "--positives-left-oracle",
        action="store_true",
        help="beside each estimate of positives left, the sum over U of a supervised model's "
        "out-of-fold probabilities (every true pool label): how close these features allow",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated subset (default: all required methods and ablations)",
    )
    p.add_argument(
        "--embeddings-file",
        type=Path,
        default=None,
        help=".npy file with one float32 row per case (cases order)",
    )
    p.add_argument(
        "--own-event-columns",
        type=int,
        default=None,
        help="how many of the embeddings file's last columns are about the case's own event "
        "(default: from encoder.pt beside the file, as the encoder quality run writes it; "
        "without one, every column is used)",
    )
    add_loop_arguments(p, defaults={"random_state": "--seed"})
    return p


def own_event_columns_beside(embeddings_file: Path) -> int | None:
    """The own-event column count of the encoder saved beside an embeddings file
    (``encoder.pt``, as ``python -m encoders.bench.quality`` writes it), or None."""
    checkpoint = Path(embeddings_file).parent / "encoder.pt"
    if not checkpoint.is_file():
        return None
    from encoders.checkpoint import load_raw, own_event_columns  # torch: only for this file

    return own_event_columns(load_raw(checkpoint)["config"])


def settings_from_args(args: argparse.Namespace) -> dict:
    settings = dict(
        iterations=args.iterations,
        seed_fraction=args.seed_fraction,
        expert_recall=args.expert_recall,
        expert_false_positive=args.expert_false_positive,
        quick=args.quick,
        seed=args.seed,
        n_jobs=args.n_jobs,
        positives_left_oracle=args.positives_left_oracle,
        **loop_arguments(args),
    )
    if args.methods:
        settings["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    elif args.quick:
        settings["methods"] = REQUIRED_METHODS
    return settings


def main(argv: list[str] | None = None) -> dict:
    argv = list(argv) if argv is not None else None
    import sys

    raw = sys.argv[1:] if argv is None else argv
    if raw and raw[0] == "merge":
        merge = argparse.ArgumentParser(description="merge parallel benchmark runs")
        merge.add_argument("parts", nargs="+", type=Path)
        merge.add_argument("--out", required=True, type=Path)
        margs = merge.parse_args(raw[1:])
        return merge_reports(margs.parts, margs.out)
    args = build_parser().parse_args(argv)
    embeddings = own = None
    if args.embeddings_file:
        embeddings = np.load(args.embeddings_file)
        own = args.own_event_columns
        if own is None:
            own = own_event_columns_beside(args.embeddings_file)
    return run_benchmark(
        args.data,
        args.out,
        embeddings=embeddings,
        own_event_columns=own,
        **settings_from_args(args),
    )


if __name__ == "__main__":
    main()

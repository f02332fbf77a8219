"""Replay the active PU loop on a dataset with known truth, against baselines.

A simulated precision-first expert answers each batch: a true positive is confirmed with
probability ``expert_recall``, a negative with probability ``expert_false_positive``; everything
else is "not confirmed". The pool is the earlier ~75% of the cases (by ``ts``; for fraud_handbook
April-June) or a stratified random 75%; every metric is measured on the rest (the test part).

Run: ``python -m learning.benchmark --data ../shared/data/adbench_thyroid --out bench-out/t``.
Writes ``report.json``, ``report.md`` and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from learning import pool
from learning.baselines import fit_gbrt, isolation_forest_scores
from learning.evaluation import band_precision, ranking_metrics
from learning.features import (
    Dataset,
    entity_deviation_features,
    label_derived_features,
    load_dataset,
)
from learning.pu import TwoStepPU
from learning.sampling import random_batch, select_batch, top_score_batch, uncertainty_batch

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


@dataclass
class Settings:
    """Everything that shapes a benchmark run (written into report.json)."""

    iterations: int = 10
    batch_size: int = 100
    seed_fraction: float = 0.1
    expert_recall: float = 0.9
    expert_false_positive: float = 0.0
    seed: int = 0
    quick: bool = False
    confirmed_weight: float = 5.0
    n_clusters: int = 10
    pool_size: int | None = None
    top_score_share: float = 0.5
    uncertainty: str = "threshold"
    top_fraction: float = 0.01
    entity_windows_days: tuple[float, ...] = (1, 7, 28)
    entity_deviation: bool = True
    n_estimators: int = 100
    n_estimators_em: int = 50
    learning_rate: float | str = "auto"
    min_child_samples: int | str = "auto"
    max_unlabeled: int | None = 100_000
    spy_fraction: float = 0.15
    spy_quantile: float = 0.1
    em_rounds_step1: int = 2
    em_rounds_step2: int = 2
    positive_weight: float = 5.0
    n_jobs: int | None = 1
    methods: tuple[str, ...] = field(default_factory=lambda: REQUIRED_METHODS + EXTRA_METHODS)


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


class Harness:
    """Shared state of one run: data, split, features, the simulated expert."""

    def __init__(self, ds: Dataset, settings: Settings, embeddings: np.ndarray | None, log):
        self.ds, self.settings, self.log = ds, settings, log
        self.y = ds.labels.astype(int)
        self.split = split_cases(ds, seed=settings.seed)
        self.seeds = seed_positives(
            ds, self.split, fraction=settings.seed_fraction, seed=settings.seed
        )
        hand = ds.feature_frame()
        self.hand = hand.to_numpy(dtype=np.float32)
        self.hand_names = list(hand.columns)
        self.entity_columns = ds.identifier_columns() if ds.ts is not None else []
        self.embeddings = embeddings
        self.feature_cache: dict = {}
        # Label-free "value / the entity's own earlier mean" columns, computed once.
        self.deviation, self.deviation_names = None, []
        if settings.entity_deviation and ds.ts is not None and "entity_id" in ds.cases.columns:
            dev = entity_deviation_features(ds.cases, ds.numeric_columns)
            self.deviation, self.deviation_names = dev.to_numpy(np.float32), list(dev.columns)
        if embeddings is not None and len(embeddings) != ds.n_cases:
            raise ValueError(f"embeddings have {len(embeddings)} rows, cases {ds.n_cases}")
        # One uniform draw per case, shared by every method: the expert answers a case the same
        # way whichever strategy showed it.
        draw = np.random.RandomState(settings.seed + 1).random_sample(ds.n_cases)
        self.expert_confirms = np.where(
            self.y == 1, draw < settings.expert_recall, draw < settings.expert_false_positive
        )
        self.pool_seed = self.seeds[self.split.pool]
        # Known positives outside the pool at scoring time: the test part's own seeds (a rule
        # fires in real time). Never the truth.
        self.test_seed_mask = np.zeros(ds.n_cases, bool)
        self.test_seed_mask[self.split.test] = self.seeds[self.split.test]

    def features(
        self,
        pool_positive: np.ndarray | None,
        *,
        entity: bool,
        embeddings: bool,
        deviation: bool = True,
    ):
        """Feature matrix for all cases, shape (n_cases, n_features), and the names."""
        blocks, names = [self.hand], list(self.hand_names)
        if deviation and self.deviation is not None:
            blocks.append(self.deviation)
            names += self.deviation_names
        if entity and self.entity_columns:
            known = self.test_seed_mask.copy()
            known[self.split.pool] = pool_positive
            ld = label_derived_features(
                self.ds.cases,
                known,
                columns=self.entity_columns,
                windows_days=self.settings.entity_windows_days,
                cache=self.feature_cache,
            )
            blocks.append(ld.to_numpy(dtype=np.float32))
            names += list(ld.columns)
        if embeddings and self.embeddings is not None:
            blocks.append(np.asarray(self.embeddings, dtype=np.float32))
            names += [f"emb{i}" for i in range(self.embeddings.shape[1])]
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0], names

    def two_step(self) -> TwoStepPU:
        st = self.settings
        return TwoStepPU(
            spy_fraction=st.spy_fraction,
            spy_quantile=st.spy_quantile,
            em_rounds_step1=st.em_rounds_step1,
            em_rounds_step2=st.em_rounds_step2,
            positive_weight=st.positive_weight,
            n_estimators=st.n_estimators,
            n_estimators_em=st.n_estimators_em,
            learning_rate=st.learning_rate,
            min_child_samples=st.min_child_samples,
            max_unlabeled=st.max_unlabeled,
            n_jobs=st.n_jobs,
            random_state=st.seed,
        )

    def test_metrics(self, scores_test: np.ndarray) -> dict:
        """Ranking metrics on the test part, plus ``band_precision_unknown``: the bands over the
        test cases nobody knew at scoring time (all of them but the test part's own seeds)."""
        y_test = self.y[self.split.test]
        metrics = ranking_metrics(y_test, scores_test)
        unknown = ~self.test_seed_mask[self.split.test]
        metrics["band_precision_unknown"] = band_precision(y_test[unknown], scores_test[unknown])
        return metrics


def _naive_scorer(h: Harness, X_pool, s, w, X_all):
    booster = fit_gbrt(
        X_pool,
        s,
        sample_weight=w,
        n_estimators=h.settings.n_estimators,
        learning_rate=h.settings.learning_rate,
        min_child_samples=h.settings.min_child_samples,
        n_jobs=h.settings.n_jobs,
        seed=h.settings.seed,
    )
    return booster.predict(X_all)


def _two_step_scorer(h: Harness, X_pool, s, w, X_all):
    return h.two_step().fit(X_pool, s, sample_weight=w).predict_proba(X_all)[:, 1]


def _make_strategy(name: str, h: Harness) -> Callable:
    st = h.settings
    if name == "random_batches":
        return lambda scores, X, n, mask, rs: random_batch(
            scores, X, n, candidate_mask=mask, random_state=rs
        )
    if name == "top_score_batches":
        return lambda scores, X, n, mask, rs: top_score_batch(
            scores, X, n, candidate_mask=mask, random_state=rs
        )
    if name == "uncertainty_only":
        return lambda scores, X, n, mask, rs: uncertainty_batch(
            scores,
            X,
            n,
            candidate_mask=mask,
            uncertainty=st.uncertainty,
            top_fraction=st.top_fraction,
            random_state=rs,
        )
    share = 0.0 if name == "active_pu_diverse_only" else st.top_score_share
    return lambda scores, X, n, mask, rs: (
        select_batch(
            scores,
            X,
            n,
            candidate_mask=mask,
            pool_size=st.pool_size,
            n_clusters=st.n_clusters,
            uncertainty=st.uncertainty,
            top_fraction=st.top_fraction,
            top_score_share=share,
            random_state=rs,
        ).indices
    )


def run_active(h: Harness, name: str) -> tuple[dict, list[dict], np.ndarray]:
    """Replay the loop for one active method; returns its metrics, curve and test scores."""
    st = h.settings
    entity = name != "active_pu_no_entity_features"
    use_emb = name not in ("active_pu_no_embeddings",) and h.embeddings is not None
    scorer = _naive_scorer if name == "active_pu_naive_model" else _two_step_scorer
    strategy = _make_strategy(name, h)
    pool_idx, test_idx = h.split.pool, h.split.test
    states = pool.initial_states(h.pool_seed)
    rng = np.random.RandomState(st.seed)
    curve, t0, labels = [], time.perf_counter(), 0
    for it in range(st.iterations + 1):
        X_all, _ = h.features(
            pool.positive_mask(states),
            entity=entity,
            embeddings=use_emb,
            deviation=name != "active_pu_no_deviation_features",
        )
        s, w = pool.training_targets(states, confirmed_weight=st.confirmed_weight)
        scores = scorer(h, X_all[pool_idx], s, w, X_all)
        found = int(((states == pool.CONFIRMED) & (h.y[pool_idx] == 1)).sum())
        pr_auc = h.test_metrics(scores[test_idx])["pr_auc"]
        curve.append({"labels": labels, "positives_found": found, "pr_auc": pr_auc})
        h.log(
            f"  {name}: iteration {it}/{st.iterations}, labels {labels}, positives found "
            f"{found}, test PR-AUC {pr_auc:.3f} ({time.perf_counter() - t0:.0f} s)"
        )
        if it == st.iterations:
            break
        mask = pool.offerable_mask(states)
        X_cluster = X_all[pool_idx]
        batch = np.asarray(
            strategy(scores[pool_idx], X_cluster, st.batch_size, mask, rng), dtype=np.intp
        )
        answers = np.where(h.expert_confirms[pool_idx[batch]], pool.CONFIRMED, pool.NOT_CONFIRMED)
        states = pool.apply_answers(pool.mark_shown(states, batch), batch, answers)
        labels += len(batch)
    metrics = h.test_metrics(scores[test_idx])
    confirmed = states == pool.CONFIRMED
    metrics.update(
        labels_used=labels,
        positives_found=int((confirmed & (h.y[pool_idx] == 1)).sum()),
        confirmed=int(confirmed.sum()),
        seconds=time.perf_counter() - t0,
    )
    return metrics, curve, scores[test_idx]


def run_static(h: Harness, name: str) -> tuple[dict, np.ndarray]:
    """One of the label-free baselines or the oracle; returns metrics and test scores."""
    st = h.settings
    t0 = time.perf_counter()
    pool_idx, test_idx = h.split.pool, h.split.test
    if name == "isolation_forest":
        scores_test = isolation_forest_scores(
            h.hand[pool_idx], h.hand[test_idx], random_state=st.seed, n_jobs=st.n_jobs
        )
    elif name == "oracle":
        # The oracle: the same GBRT on every true pool label, hand features only.
        scores_test = _naive_scorer(h, h.hand[pool_idx], h.y[pool_idx], None, h.hand[test_idx])
    elif name == "oracle_all_features":
        X_all, _ = h.features(h.pool_seed | (h.y[pool_idx] == 1), entity=True, embeddings=True)
        scores_test = _naive_scorer(h, X_all[pool_idx], h.y[pool_idx], None, X_all[test_idx])
    else:
        hand_only = name == "naive_pu_hand_features"
        X_all, _ = h.features(
            h.pool_seed, entity=not hand_only, embeddings=False, deviation=not hand_only
        )
        s = h.pool_seed.astype(int)
        scorer = _two_step_scorer if name == "two_step_pu" else _naive_scorer
        scores_test = scorer(h, X_all[pool_idx], s, None, X_all[test_idx])
    metrics = h.test_metrics(scores_test)
    metrics.update(labels_used=0, positives_found=0, confirmed=0, seconds=time.perf_counter() - t0)
    return metrics, scores_test


ACTIVE = {
    "active_pu",
    "active_pu_no_embeddings",
    "uncertainty_only",
    "random_batches",
    "top_score_batches",
    "active_pu_naive_model",
    "active_pu_no_entity_features",
    "active_pu_no_deviation_features",
    "active_pu_diverse_only",
}


def run_benchmark(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    embeddings: np.ndarray | None = None,
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
        One row per case in cases order; ``active_pu`` then uses them and
        ``active_pu_no_embeddings`` runs without.
    log : callable
        Progress lines go here.
    **settings
        Fields of :class:`Settings`.

    Returns
    -------
    dict
        The report (as written to report.json).
    """
    st = Settings(**settings)
    if st.quick:
        st.iterations = min(st.iterations, 3)
        st.batch_size = min(st.batch_size, 50)
        st.n_estimators, st.n_estimators_em = min(st.n_estimators, 50), min(st.n_estimators_em, 25)
    methods = list(st.methods)
    if embeddings is not None and "active_pu_no_embeddings" not in methods:
        methods.insert(1, "active_pu_no_embeddings")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the simulated expert needs the truth")
    h = Harness(ds, st, embeddings, log)
    for twin in ("active_pu_no_entity_features", "naive_pu_hand_features"):
        if not h.entity_columns and twin in methods:
            methods.remove(twin)  # identical to its entity-feature twin here
    test_y = h.y[h.split.test]
    log(
        f"{ds.name}: {ds.n_cases} cases, pool {len(h.split.pool)} ({h.split.rule}), test "
        f"{len(h.split.test)} with {int(test_y.sum())} positives; {int(h.pool_seed.sum())} seed "
        f"positives in the pool; entity features on {h.entity_columns or 'nothing'}"
    )
    report = {
        "dataset": ds.name,
        "n_pool": int(len(h.split.pool)),
        "n_test": int(len(h.split.test)),
        "test_positives": int(test_y.sum()),
        "pool_positives": int(h.y[h.split.pool].sum()),
        "seed_positives_in_pool": int(h.pool_seed.sum()),
        "split": h.split.rule,
        "entity_feature_columns": h.entity_columns,
        "embeddings": None if embeddings is None else int(embeddings.shape[1]),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(st).items()},
        "methods": {},
        "curves": {},
    }
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
    report["seconds_total"] = time.perf_counter() - t_start
    _write(report, out)
    _plots(report, test_y, test_scores, out)
    log(
        f"wrote {out / 'report.json'}, {out / 'report.md'} and plots "
        f"({report['seconds_total']:.0f} s)"
    )
    return report


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
                cells.append(
                    f"{c[i]['positives_found']} / {c[i]['pr_auc']:.3f}" if i < len(c) else ""
                )
            lines.append(f"| {point['labels']} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Cells: positives found / test PR-AUC.")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", default=Path("bench-out"), type=Path)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed-fraction", type=float, default=0.1)
    p.add_argument("--expert-recall", type=float, default=0.9)
    p.add_argument("--expert-false-positive", type=float, default=0.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-score-share", type=float, default=0.5)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument(
        "--max-unlabeled", type=int, default=100_000, help="U cases sampled per EM round (0: all)"
    )
    p.add_argument(
        "--n-estimators-em", type=int, default=50, help="trees of the intermediate EM rounds"
    )
    p.add_argument(
        "--learning-rate",
        type=lambda v: v if v == "auto" else float(v),
        default="auto",
        help="LightGBM learning rate of every model ('auto': by the number of rows)",
    )
    p.add_argument(
        "--min-child-samples",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="LightGBM min_child_samples of every model ('auto': scaled with the rows)",
    )
    p.add_argument(
        "--no-entity-deviation",
        action="store_true",
        help="leave out the value / the entity's own earlier mean features",
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
    return p


def settings_from_args(args: argparse.Namespace) -> dict:
    settings = dict(
        iterations=args.iterations,
        batch_size=args.batch_size,
        seed_fraction=args.seed_fraction,
        expert_recall=args.expert_recall,
        expert_false_positive=args.expert_false_positive,
        quick=args.quick,
        seed=args.seed,
        top_score_share=args.top_score_share,
        n_jobs=args.n_jobs,
        max_unlabeled=args.max_unlabeled or None,
        n_estimators_em=args.n_estimators_em,
        learning_rate=args.learning_rate,
        min_child_samples=args.min_child_samples,
        entity_deviation=not args.no_entity_deviation,
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
    embeddings = np.load(args.embeddings_file) if args.embeddings_file else None
    return run_benchmark(args.data, args.out, embeddings=embeddings, **settings_from_args(args))


if __name__ == "__main__":
    main()

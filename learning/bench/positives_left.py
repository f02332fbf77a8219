"""Does the estimate of positives left in U hold up over a simulated loop? (issue 14)

``python -m learning.bench.positives_left --data ../shared/data/adbench_thyroid --out DIR``

On an adbench set (every case in the pool): 10% of the true positives are drawn as seeds, then
each iteration fits :class:`~learning.pu.TwoStepPU` on the pool states, shows the expert a batch
(half the top scores of U, half drawn at random from the rest of U) and the expert confirms each
true positive with probability ``expert_recall`` (0.9). After every answered batch the next model
is fitted and the estimators below are set against the truth (true positives still in U):

- ``isotonic`` (:func:`learning.prior.positives_left`, the default) and, with ``--methods``,
  ``logistic``: calibration of held-out TwoStepPU scores (3-fold
  :func:`learning.noise.out_of_fold_scores`) on the answered cases, applied to U;
- ``elkan_noto``: the held-out scores summed over U, divided by their mean over P
  (Elkan and Noto's c) - no interval;
- ``old``: what :func:`learning.stopping.stopping_signals` used to say, the sum of the in-sample
  scores over U.

Prints a table per method (coverage of the interval, share of checkpoints with the point within
2x of the truth, median width of the interval over the truth) and how often
:func:`learning.stopping.stopping_signals` would suggest a stop, and writes every checkpoint to
``DIR/positives_left_<dataset>.json``. "Within 2x" compares ``max(point, 1)`` with
``max(truth, 1)``: under one positive counts as one, so a truth of 0 is met by any point under 2.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from learning import pool
from learning.noise import out_of_fold_scores
from learning.prior import METHODS, positives_left
from learning.pu import TwoStepPU
from learning.sampling import random_batch, top_score_batch
from learning.stopping import stopping_signals


def load_adbench(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The numeric columns (``schema.json``) and the ``label`` column of an adbench set."""
    schema = json.loads((folder / "schema.json").read_text())
    columns = schema["cases"]["numeric"]
    cases = pd.read_parquet(folder / "cases.parquet", columns=[*columns, "label"])
    return cases[columns].to_numpy(np.float32), cases["label"].to_numpy().astype(int)


def _model(seed: int, n_estimators: int) -> TwoStepPU:
    return TwoStepPU(
        n_estimators=n_estimators,
        n_estimators_em=max(10, n_estimators // 2),
        n_jobs=1,
        random_state=seed,
    )


def within_2x(point: float, truth: float) -> bool:
    return 0.5 <= max(point, 1.0) / max(truth, 1.0) <= 2.0


def simulate(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_batches: int = 15,
    batch_size: int = 20,
    seed_fraction: float = 0.1,
    expert_recall: float = 0.9,
    n_estimators: int = 100,
    oof_folds: int = 3,
    methods: tuple[str, ...] = ("isotonic",),
    n_bootstrap: int = 200,
) -> list[dict]:
    """Replay the loop; one record per answered batch with every estimate and the truth."""
    rng = np.random.RandomState(seed)
    positives = np.flatnonzero(y == 1)
    seeds = rng.choice(positives, max(2, round(seed_fraction * len(positives))), replace=False)
    seed_mask = np.zeros(len(y), dtype=bool)
    seed_mask[seeds] = True
    states = pool.initial_states(seed_mask)
    shown: list[tuple[np.ndarray, np.ndarray]] = []  # (indices, confirmed) per batch
    records = []
    for t in range(n_batches + 1):
        s, weight = pool.training_targets(states)
        model = _model(seed * 1000 + t, n_estimators).fit(X, s, sample_weight=weight)
        scores = model.predict_proba(X)[:, 1]
        unlabeled = states == pool.U
        if t:
            held_out = out_of_fold_scores(
                X,
                s,
                estimator=_model(seed, n_estimators),
                sample_weight=weight,
                n_splits=oof_folds,
                random_state=seed,
            )
            estimate = partial(
                positives_left,
                expert_recall=expert_recall,
                n_bootstrap=n_bootstrap,
                random_state=seed,
            )
            records.append(_checkpoint(y, s, scores, held_out, unlabeled, shown, estimate, methods))
        if t == n_batches:
            break
        top = top_score_batch(
            scores, None, batch_size // 2, candidate_mask=unlabeled, random_state=rng
        )
        rest = unlabeled.copy()
        rest[top] = False
        drawn = random_batch(
            scores, None, batch_size - len(top), candidate_mask=rest, random_state=rng
        )
        batch = np.concatenate([top, drawn])
        confirmed = (y[batch] == 1) & (rng.random_sample(len(batch)) < expert_recall)
        shown.append((batch, confirmed))
        states = pool.apply_answers(
            states, batch, np.where(confirmed, pool.CONFIRMED, pool.NOT_CONFIRMED)
        )
    return records


def _checkpoint(y, s, scores, held_out, unlabeled, shown, estimate, methods) -> dict:
    record = {
        "batch": len(shown),
        "truth": int(y[unlabeled].sum()),
        "n_unlabeled": int(unlabeled.sum()),
        "last_batch_confirmed": int(shown[-1][1].sum()),
        "estimates": {},
    }
    for method in methods:
        est = estimate(
            held_out[unlabeled],
            batch_scores=[held_out[idx] for idx, _ in shown],
            batch_confirmed=[confirmed for _, confirmed in shown],
            method=method,
        )
        record["estimates"][method] = {"point": est.point, "low": est.low, "high": est.high}
        if method == methods[0]:
            signals = stopping_signals(
                [int(confirmed.sum()) for _, confirmed in shown],
                [len(idx) for idx, _ in shown],
                positives_left=est,
            )
            record["suggest_stop"] = signals.suggest_stop
    c = float(held_out[s == 1].mean())
    record["estimates"]["elkan_noto"] = {"point": float(held_out[unlabeled].sum() / c)}
    record["estimates"]["old"] = {"point": float(scores[unlabeled].sum())}
    return record


def summarize(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per method: checkpoints, share with the truth inside the interval, share within 2x."""
    out = {}
    for method in records[0]["estimates"]:
        rows = [(r["truth"], r["estimates"][method]) for r in records]
        summary = {
            "checkpoints": len(rows),
            "within_2x": float(np.mean([within_2x(e["point"], tr) for tr, e in rows])),
        }
        if "low" in rows[0][1]:
            summary["coverage"] = float(np.mean([e["low"] <= tr <= e["high"] for tr, e in rows]))
            widths = [(e["high"] - e["low"]) / max(tr, 1) for tr, e in rows]
            summary["median_width_over_truth"] = float(np.median(widths))
        out[method] = summary
    stops = [r["truth"] for r in records if r.get("suggest_stop")]
    out["stop"] = {"suggested": len(stops), "max_truth_when_suggested": max(stops, default=None)}
    return out


def print_table(title: str, summary: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(
        f"  {'method':12s} {'checkpoints':>11s} {'coverage':>9s} {'within 2x':>10s} {'width':>6s}"
    )
    for method, m in summary.items():
        if method == "stop":
            continue
        cov = f"{m['coverage']:.2f}" if "coverage" in m else "-"
        width = f"{m['median_width_over_truth']:.1f}" if "coverage" in m else "-"
        print(f"  {method:12s} {m['checkpoints']:11d} {cov:>9s} {m['within_2x']:10.2f} {width:>6s}")
    stop = summary["stop"]
    print(
        f"  stop suggested at {stop['suggested']} checkpoints"
        + (
            f", at most {stop['max_truth_when_suggested']} positives left then"
            if stop["suggested"]
            else ""
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="adbench folder(s)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--expert-recall", type=float, default=0.9)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--methods", nargs="+", default=["isotonic"], choices=METHODS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    everything = []
    for folder in args.data:
        name = folder.name.removeprefix("adbench_")
        X, y = load_adbench(folder)
        records = []
        for seed in args.seeds:
            started = time.perf_counter()
            run = simulate(
                X,
                y,
                seed=seed,
                n_batches=args.batches,
                batch_size=args.batch_size,
                expert_recall=args.expert_recall,
                n_estimators=args.n_estimators,
                methods=tuple(args.methods),
                n_bootstrap=args.n_bootstrap,
            )
            for r in run:
                r["seed"] = seed
            records += run
            print(
                f"{name} seed {seed}: {len(run)} checkpoints, {time.perf_counter() - started:.0f} s"
            )
        summary = summarize(records)
        print_table(f"{name} ({len(args.seeds)} seeds x {args.batches} batches)", summary)
        settings = vars(args) | {"data": str(folder), "out": str(args.out)}
        report = {"dataset": name, "settings": settings, "summary": summary, "checkpoints": records}
        (args.out / f"positives_left_{name}.json").write_text(json.dumps(report, indent=1))
        everything += records
    if len(args.data) > 1:
        print_table("all datasets", summarize(everything))


if __name__ == "__main__":
    main()

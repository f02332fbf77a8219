"""What a labelling budget could buy at best: the loop's learner on hand-picked answers.

``python -m learning.bench.label_ceiling --data ../shared/data/fraud_handbook --out bench-out/lc``

The harness's protocol (:mod:`learning.bench.harness`: its split, seed positives and features),
but instead of the loop's batches, ``--labels`` answers chosen with the truth in hand: ``k`` of
them (each of ``--confirmed``) true positives of the pool drawn at random among those that are
not seeds, optionally only from a ``--window`` of time, the rest true negatives, answered "not
confirmed". The loop's learner (two-step PU, the default loop parameters) is fitted once on
them and scored on the test part. It says what answers of a given kind are worth to the
model, e.g. whether a loop that finds 365 positives in 1,000 answers could reach a PR-AUC that
the same number of random positives gives. Prints a table, writes ``label_ceiling.json`` and
``label_ceiling.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from learning import pool
from learning.bench.harness import Harness, Settings
from learning.features import load_dataset


def draw_answers(
    h: Harness, *, n_labels: int, n_confirmed: int, window: tuple[str, str] | None, seed: int
) -> np.ndarray:
    """Pool states with ``n_confirmed`` random true positives confirmed (from ``window`` only,
    when given) and ``n_labels - n_confirmed`` random true negatives not confirmed."""
    pool_idx = h.split.pool
    truth = h.y[pool_idx] == 1
    hidden = np.flatnonzero(truth & ~h.pool_seed)
    if window is not None:
        ts = pd.to_datetime(h.raw["ts"]).to_numpy()[pool_idx]
        start, end = (pd.Timestamp(t).to_datetime64() for t in window)
        hidden = hidden[(ts[hidden] >= start) & (ts[hidden] < end)]
    if n_confirmed > len(hidden):
        raise ValueError(
            f"{n_confirmed} confirmed answers asked, the pool has {len(hidden)} such positives"
        )
    if not 0 <= n_confirmed <= n_labels:
        raise ValueError("confirmed answers must be between 0 and the labels")
    rng = np.random.default_rng(seed)
    states = pool.initial_states(h.pool_seed)
    states[rng.choice(hidden, n_confirmed, replace=False)] = pool.CONFIRMED
    negatives = np.flatnonzero(~truth)
    states[rng.choice(negatives, n_labels - n_confirmed, replace=False)] = pool.NOT_CONFIRMED
    return states


def run(
    data_dir: str | Path,
    *,
    n_labels: int = 1000,
    confirmed: tuple[int, ...] = (400, 1000),
    window: tuple[str, str] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    label_derived: bool = True,
    n_jobs: int = 1,
    log=print,
) -> dict:
    """Fit the loop's learner on each set of drawn answers; test metrics per (confirmed, seed).

    ``label_derived`` False leaves out the label-derived entity features (known positives on the
    case's customer, terminal, ... in the days before): what the answers teach without them.
    """
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the benchmark needs the truth")
    if window is not None and ds.ts is None:
        raise ValueError("--window needs cases with a ts column")
    settings = Settings.from_kwargs(seed=0, n_jobs=n_jobs, label_derived=label_derived)
    h = Harness(ds, settings, None, log)
    loop = h.loop_for("active_pu")
    pool_idx, test_idx = h.split.pool, h.split.test
    rows = []
    for k in confirmed:
        for seed in seeds:
            t0 = time.perf_counter()
            states = draw_answers(h, n_labels=n_labels, n_confirmed=k, window=window, seed=seed)
            X_all, spec = h.features(loop, pool.positive_mask(states))
            model = loop.fit(X_all[pool_idx], states, categorical_features=spec.categorical_indices)
            metrics = h.test_metrics(model.predict_proba(X_all[test_idx])[:, 1])
            row = {
                "confirmed": k,
                "seed": seed,
                "pr_auc": round(float(metrics["pr_auc"]), 4),
                "recall_at_precision_0.8": round(float(metrics["recall_at_precision"]["0.8"]), 4),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            log(str(row))
            rows.append(row)
    summary = []
    for k in confirmed:
        mine = [r for r in rows if r["confirmed"] == k]
        summary.append(
            {
                "confirmed": k,
                "pr_auc_mean": round(float(np.mean([r["pr_auc"] for r in mine])), 4),
                "recall_at_precision_0.8_mean": round(
                    float(np.mean([r["recall_at_precision_0.8"] for r in mine])), 4
                ),
            }
        )
    return {
        "dataset": ds.name,
        "labels": n_labels,
        "window": list(window) if window else None,
        "label_derived": label_derived,
        "seed_positives_in_pool": int(h.pool_seed.sum()),
        "runs": rows,
        "summary": summary,
    }


def markdown(report: dict) -> str:
    window = " to ".join(report["window"]) if report["window"] else "the whole pool"
    lines = [
        f"{report['dataset']}: {report['labels']} answers drawn with the truth, positives from "
        f"{window}; the loop's learner"
        + ("" if report.get("label_derived", True) else " without the label-derived features")
        + ", test part",
        "",
        "| confirmed | PR-AUC per seed | mean | recall at precision 0.8, mean |",
        "|---:|---|---:|---:|",
    ]
    for s in report["summary"]:
        per_seed = " / ".join(
            f"{r['pr_auc']:.3f}" for r in report["runs"] if r["confirmed"] == s["confirmed"]
        )
        lines.append(
            f"| {s['confirmed']} | {per_seed} | {s['pr_auc_mean']:.3f} | "
            f"{s['recall_at_precision_0.8_mean']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, default=Path("bench-out/label_ceiling"))
    p.add_argument("--labels", type=int, default=1000, help="answers in all (default 1000)")
    p.add_argument(
        "--confirmed",
        type=int,
        nargs="+",
        default=[400, 1000],
        help="how many of them are true positives, one run each (default 400 1000)",
    )
    p.add_argument(
        "--window",
        default=None,
        help="START,END: draw the confirmed positives from cases with START <= ts < END only",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--no-label-derived",
        action="store_true",
        help="leave out the label-derived entity features (known positives on the same customer, "
        "terminal, ... in the days before)",
    )
    args = p.parse_args(argv)
    window = tuple(args.window.split(",")) if args.window else None
    if window is not None and len(window) != 2:
        p.error("--window takes START,END")
    report = run(
        args.data,
        n_labels=args.labels,
        confirmed=tuple(args.confirmed),
        window=window,
        seeds=tuple(args.seeds),
        label_derived=not args.no_label_derived,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "label_ceiling.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "label_ceiling.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()

"""Do exported rules keep the model's precision? (issue 17, rule export)

``python -m learning.bench.rules --data ../shared/data/fraud_handbook --out bench-out/rules``

The harness's protocol (:mod:`learning.bench.harness`: its split, seeds and features): the loop's
model is fitted on the pool's seed positives alone (two-step PU, ``two_step_pu`` of the harness;
``--model active_pu``: the loop after ``--iterations`` batches of the simulated expert) and
scores every case. :class:`learning.rules.RuleExtractor` then writes rules over the hand
features that reproduce the model's top ``--top-share`` of the pool (the pool only: the test part
is never seen by the fit). On the test part (``fraud_handbook``: July) each rule's coverage and
precision against the true labels are set beside the model's own precision over its
``coverage`` highest-scored test cases; ``unknown`` repeats both without the test part's own seeds
(cases a rule in production already catches). Prints a table, writes ``rules_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from learning import pool
from learning.bench.harness import Harness, Settings, run_active
from learning.features import load_dataset
from learning.rules import RuleExtractor, rules_report

#: The harness's methods whose model the rules can be fitted to.
MODELS = ("two_step_pu", "active_pu")


def run(
    data_dir: str | Path,
    *,
    top_share: float = 0.01,
    max_depth: int = 3,
    max_rules: int = 10,
    model: str = "two_step_pu",
    iterations: int = 10,
    seed: int = 0,
    n_jobs: int = 1,
    log=print,
) -> dict:
    """Fit the model, export its rules on the pool, measure both on the test part.

    ``model``: ``two_step_pu`` (the seeds alone) or ``active_pu`` (the loop, after
    ``iterations`` batches answered by the harness's simulated expert).
    """
    t0 = time.perf_counter()
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the benchmark needs the truth")
    st = Settings.from_kwargs(seed=seed, n_jobs=n_jobs, methods=(model,), iterations=iterations)
    h = Harness(ds, st, None, log)
    pool_idx, test_idx = h.split.pool, h.split.test
    if model == "two_step_pu":
        loop = h.loop_for(model)
        X_all, spec = h.features(loop, h.pool_seed)
        states = pool.initial_states(h.pool_seed)
        fitted = loop.fit(X_all[pool_idx], states, categorical_features=spec.categorical_indices)
        scores = fitted.predict_proba(X_all)[:, 1]
        del X_all
        what = f"two-step PU on the pool's {int(h.pool_seed.sum())} seed positives"
    elif model == "active_pu":
        metrics, _, _ = run_active(h, model)
        scores = h.final_scores[model]
        what = (
            f"the loop after {iterations} x {st.loop.batch_size} simulated answers "
            f"({metrics['positives_found']} true positives confirmed)"
        )
    else:
        raise ValueError(f"model must be one of {MODELS}, not {model!r}")
    t_model = time.perf_counter() - t0
    log(f"model: {what} ({t_model:.0f} s)")

    numeric = list(ds.numeric_columns)
    categorical = ds.low_cardinality_categoricals()
    pool_frame = h.raw.iloc[pool_idx].reset_index(drop=True)
    extractor = RuleExtractor(
        numeric,
        categorical,
        top_share=top_share,
        max_depth=max_depth,
        max_rules=max_rules,
        random_state=seed,
    ).fit(pool_frame, scores[pool_idx])
    t_rules = time.perf_counter() - t0 - t_model
    log(f"rules: {len(extractor.rules_)} from a depth-{max_depth} tree ({t_rules:.0f} s)")

    test_frame = h.raw.iloc[test_idx].reset_index(drop=True)
    y_test = h.y[test_idx] == 1
    everything = np.ones(len(test_idx), bool)
    unknown = ~h.test_seed_mask[test_idx]
    rows = rules_report(
        extractor.rules_, test_frame, scores[test_idx], positive=y_test, known=everything
    )
    unknown_rows = rules_report(
        extractor.rules_, test_frame, scores[test_idx], positive=y_test, known=unknown
    )
    for row, other in zip(rows, unknown_rows, strict=True):
        row["unknown"] = {
            k: other[k] for k in ("precision", "n_known", "model_precision", "model_n_known")
        }
    report = {
        "dataset": ds.name,
        "split": h.split.rule,
        "n_pool": int(len(pool_idx)),
        "n_test": int(len(test_idx)),
        "test_positives": int(y_test.sum()),
        "test_seeds": int((~unknown).sum()),
        "pool_seeds": int(h.pool_seed.sum()),
        "model": model,
        "model_description": what,
        "hand_features": {"numeric": numeric, "categorical": categorical},
        "settings": {
            "top_share": top_share,
            "max_depth": max_depth,
            "max_rules": max_rules,
            "seed": seed,
            "threshold": extractor.threshold_,
        },
        "rules": rows,
        "seconds": {
            "model": round(t_model, 1),
            "rules": round(t_rules, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
    }
    return report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_markdown(report: dict) -> str:
    lines = [
        f"{report['dataset']}: pool {report['n_pool']} ({report['split']}), test "
        f"{report['n_test']} with {report['test_positives']} positives and "
        f"{report['test_seeds']} seeds; rules fitted to the top "
        f"{report['settings']['top_share']:.1%} of the pool by score of "
        f"{report['model_description']}",
        "",
        "| rule | coverage | precision | model at that coverage | unknown: rule (n) | "
        "unknown: model (n) | rules 1..i: coverage | precision | model |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rules"]:
        u, c = r["unknown"], r["cumulative"]
        lines.append(
            f"| `{r['rule']}` | {r['coverage']} | {_fmt(r['precision'])} | "
            f"{_fmt(r['model_precision'])} | {_fmt(u['precision'])} ({u['n_known']}) | "
            f"{_fmt(u['model_precision'])} ({u['model_n_known']}) | {c['coverage']} | "
            f"{_fmt(c['precision'])} | {_fmt(c['model_precision'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", default=Path("bench-out/rules"), type=Path)
    p.add_argument("--top-share", type=float, default=0.01)
    p.add_argument("--max-depth", type=int, default=3)
    p.add_argument("--max-rules", type=int, default=10)
    p.add_argument("--model", choices=MODELS, default="two_step_pu")
    p.add_argument(
        "--iterations", type=int, default=10, help="batches answered first (--model active_pu)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=1)
    args = p.parse_args(argv)
    report = run(
        args.data,
        top_share=args.top_share,
        max_depth=args.max_depth,
        max_rules=args.max_rules,
        model=args.model,
        iterations=args.iterations,
        seed=args.seed,
        n_jobs=args.n_jobs,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"rules_{report['dataset']}_{report['model']}.json"
    path.write_text(json.dumps(report, indent=2))
    print(report_markdown(report))
    print(f"wrote {path} ({report['seconds']['total']:.0f} s)")
    return report


if __name__ == "__main__":
    main()

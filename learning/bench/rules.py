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
    top_shares: tuple[float, ...] = (0.01,),
    max_depth: int = 3,
    max_rules: int = 10,
    model: str = "two_step_pu",
    iterations: int = 10,
    seed: int = 0,
    n_jobs: int = 1,
    log=print,
) -> dict:
    """Fit the model, export its rules on the pool for each top share, measure on the test part.

    ``model``: ``two_step_pu`` (the seeds alone) or ``active_pu`` (the loop, after
    ``iterations`` batches answered by the harness's simulated expert). The report's ``runs``
    hold one rule list per top share; ``rules`` is the first one's.
    """
    t0 = time.perf_counter()
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the benchmark needs the truth")
    st = Settings.from_kwargs(seed=seed, n_jobs=n_jobs, methods=(model,), iterations=iterations)
    h = Harness(ds, st, None, log)
    scores, what = _model_scores(h, model)
    t_model = time.perf_counter() - t0
    log(f"model: {what} ({t_model:.0f} s)")
    numeric, categorical = list(ds.numeric_columns), ds.low_cardinality_categoricals()
    runs = []
    for top_share in top_shares:
        t_run = time.perf_counter()
        extractor = RuleExtractor(
            numeric,
            categorical,
            top_share=top_share,
            max_depth=max_depth,
            max_rules=max_rules,
            random_state=seed,
        ).fit(h.raw.iloc[h.split.pool].reset_index(drop=True), scores[h.split.pool])
        runs.append(
            {
                "top_share": top_share,
                "threshold": extractor.threshold_,
                "rules": _test_rows(h, extractor, scores),
                "seconds": round(time.perf_counter() - t_run, 1),
            }
        )
        log(f"rules for the top {top_share:.1%}: {len(extractor.rules_)} ({runs[-1]['seconds']} s)")
    test_idx = h.split.test
    return {
        "dataset": ds.name,
        "split": h.split.rule,
        "n_pool": int(len(h.split.pool)),
        "n_test": int(len(test_idx)),
        "test_positives": int(h.y[test_idx].sum()),
        "test_seeds": int(h.test_seed_mask[test_idx].sum()),
        "pool_seeds": int(h.pool_seed.sum()),
        "model": model,
        "model_description": what,
        "hand_features": {"numeric": numeric, "categorical": categorical},
        "settings": {"max_depth": max_depth, "max_rules": max_rules, "seed": seed},
        "rules": runs[0]["rules"],
        "runs": runs,
        "seconds": {"model": round(t_model, 1), "total": round(time.perf_counter() - t0, 1)},
    }


def _model_scores(h: Harness, model: str) -> tuple[np.ndarray, str]:
    """Every case's score by the model, shape (n_cases,), and what the model was."""
    if model == "two_step_pu":
        loop = h.loop_for(model)
        X_all, spec = h.features(loop, h.pool_seed)
        states = pool.initial_states(h.pool_seed)
        fitted = loop.fit(
            X_all[h.split.pool], states, categorical_features=spec.categorical_indices
        )
        return (
            fitted.predict_proba(X_all)[:, 1],
            f"two-step PU on the pool's {int(h.pool_seed.sum())} seed positives",
        )
    if model == "active_pu":
        metrics, _, _ = run_active(h, model)
        return h.final_scores[model], (
            f"the loop after {h.settings.iterations} x {h.settings.batch_size} simulated answers "
            f"({metrics['positives_found']} true positives confirmed)"
        )
    raise ValueError(f"model must be one of {MODELS}, not {model!r}")


def _test_rows(h: Harness, extractor: RuleExtractor, scores: np.ndarray) -> list[dict]:
    """The rules measured on the test part: true labels, then without the test part's seeds."""
    test_idx = h.split.test
    frame = h.raw.iloc[test_idx].reset_index(drop=True)
    y_test = h.y[test_idx] == 1
    unknown = ~h.test_seed_mask[test_idx]
    everything = np.ones(len(test_idx), bool)
    rows = rules_report(
        extractor.rules_, frame, scores[test_idx], positive=y_test, known=everything
    )
    others = rules_report(extractor.rules_, frame, scores[test_idx], positive=y_test, known=unknown)
    for row, other in zip(rows, others, strict=True):
        row["unknown"] = {
            k: other[k] for k in ("precision", "n_known", "model_precision", "model_n_known")
        }
    return rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_markdown(report: dict) -> str:
    lines = [
        f"{report['dataset']}: pool {report['n_pool']} ({report['split']}), test "
        f"{report['n_test']} with {report['test_positives']} positives and "
        f"{report['test_seeds']} seeds; model: {report['model_description']}",
    ]
    for run in report["runs"]:
        lines += [
            "",
            f"Rules fitted to the top {run['top_share']:.1%} of the pool by score "
            f"(score >= {run['threshold']:.4g}), measured on the test part:",
            "",
            "| rule | coverage | precision | model at that coverage | unknown: rule (n) | "
            "unknown: model (n) | rules 1..i: coverage | precision | model |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run["rules"]:
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
    p.add_argument(
        "--top-share",
        default="0.01",
        help="the model's top share the rules reproduce; several, comma-separated, share one fit",
    )
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
        top_shares=tuple(float(v) for v in args.top_share.split(",") if v.strip()),
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

"""The batch strategies on several datasets and seeds: does ``active_pu`` win everywhere?

For each dataset and seed, the harness (:func:`learning.bench.harness.run_benchmark`) replays
``active_pu``, ``uncertainty_only``, ``random_batches``, ``top_score_batches`` and the seeds-only
``two_step_pu``; the means over seeds are checked against issue #14's bar:

- ``active_pu`` PR-AUC ≥ max(``uncertainty_only``, ``random_batches``, ``top_score_batches``) − 0.01
  and ≥ ``two_step_pu`` − 0.005;
- positives found ≥ 90% of ``top_score_batches``'.

Run::

    python -m learning.bench.strategies --out bench-out/strategies --seeds 0 1 2 \\
        --data ../shared/data/adbench_thyroid --data ../shared/data/adbench_cardio \\
        --batch-size 20

Every loop flag of the harness is accepted (``--not-confirmed-weight 0`` ...). Writes
``report.json`` and ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from learning.bench.harness import add_loop_arguments, loop_arguments, run_benchmark

STRATEGIES = ("active_pu", "uncertainty_only", "random_batches", "top_score_batches")
METHODS = (*STRATEGIES, "two_step_pu")
PR_AUC_MARGIN = 0.01
SEEDS_ONLY_MARGIN = 0.005
FOUND_SHARE = 0.9


def verdict(means: dict[str, dict[str, float]]) -> dict:
    """The bar on one dataset's means (``pr_auc``, ``positives_found`` per method)."""
    others = max(means[m]["pr_auc"] for m in STRATEGIES[1:])
    ours = means["active_pu"]
    checks = {
        "pr_auc_vs_strategies": ours["pr_auc"] >= others - PR_AUC_MARGIN,
        "pr_auc_vs_seeds_only": ours["pr_auc"]
        >= means["two_step_pu"]["pr_auc"] - SEEDS_ONLY_MARGIN,
        "positives_found": ours["positives_found"]
        >= FOUND_SHARE * means["top_score_batches"]["positives_found"],
    }
    return {
        "margin_vs_best_strategy": ours["pr_auc"] - others,
        **checks,
        "all": all(checks.values()),
    }


def run(data: list[str], seeds: list[int], loop: dict, log=print) -> list[dict]:
    reports = []
    for folder in data:
        runs: dict[str, list[dict]] = {m: [] for m in METHODS}
        name = Path(folder).name
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                report = run_benchmark(
                    folder,
                    tmp,
                    log=lambda *_: None,
                    methods=METHODS,
                    seed=seed,
                    positives_left_methods=(),
                    **loop,
                )
            for m in METHODS:
                runs[m].append(
                    {
                        "pr_auc": report["methods"][m]["pr_auc"],
                        "recall_at_precision_0.8": report["methods"][m]["recall_at_precision"][
                            "0.8"
                        ],
                        "positives_found": report["methods"][m]["positives_found"],
                    }
                )
            log(
                f"{name} seed {seed}: "
                + ", ".join(f"{m} {runs[m][-1]['pr_auc']:.3f}" for m in METHODS)
            )
            if str(report.get("split", "")).startswith("ts"):
                break  # a time split is the same problem whatever the seed
        means = {
            m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in runs.items()
        }
        reports.append(
            {
                "dataset": name,
                "seeds": seeds[: len(runs["active_pu"])],
                "means": means,
                "runs": runs,
                "verdict": verdict(means),
            }
        )
    return reports


def report_markdown(reports: list[dict]) -> str:
    lines = [
        "PR-AUC (positives found), mean over seeds; bar: active_pu ≥ best other strategy − 0.01, "
        "≥ two_step_pu − 0.005, positives found ≥ 90% of top_score_batches'.",
        "",
        "| dataset | seeds | " + " | ".join(f"`{m}`" for m in METHODS) + " | active − best | bar |",
        "|---|---|" + "---|" * (len(METHODS) + 2),
    ]
    for r in reports:
        cells = [
            f"{r['means'][m]['pr_auc']:.3f} ({r['means'][m]['positives_found']:.0f})"
            for m in METHODS
        ]
        v = r["verdict"]
        lines.append(
            f"| {r['dataset']} | {len(r['seeds'])} | "
            + " | ".join(cells)
            + f" | {v['margin_vs_best_strategy']:+.3f} | {'met' if v['all'] else 'not met'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="dataset folder (repeat)")
    parser.add_argument("--out", default="bench-out/strategies")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_loop_arguments(parser)
    args = parser.parse_args(argv)
    reports = run(args.data, args.seeds, loop_arguments(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(reports, indent=2))
    text = report_markdown(reports)
    (out / "report.md").write_text(text)
    print(text)
    return reports


if __name__ == "__main__":
    main()

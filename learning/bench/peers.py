"""Seeds only: the project's learner against the PU library pulearn and PyOD's detectors.

The protocol (issue #14's peer benchmark):

- adbench sets (no ``ts``): a stratified 70/30 split, a random 10% of the train part's positives
  labeled (``s = 1``), everything else unlabeled; ``fraud_handbook`` (``ts``, a seed rule): the
  harness's time split (April-June / July) and the dataset's own seed positives;
- every method sees the same matrix: the project's features for the pool, built as the loop
  builds them with the seeds as the only known positives (:class:`learning.bench.harness.Harness`);
  the scikit-learn peers get it median-imputed, the linear ones standardized too;
- metric: PR-AUC (and recall at precision 0.8) on the test part, from the true labels; several
  seeds where a test part is small.

Methods (``--methods``): ``two_step_pu`` (the project's default learner: the loop's
:class:`learning.pu.TwoStepPU` with :class:`learning.loop.LoopParams`' defaults), ``naive_pu``
(LightGBM P vs U), pulearn's ``NNPUClassifier`` with each of its own prior estimators
(``pulearn_nnpu_histogram``, ``pulearn_nnpu_scar_em``) and, as a reference that needs what a user
never has, with the true prior (``pulearn_nnpu_true_prior``), ``pulearn_elkanoto`` and
``pulearn_weighted_elkanoto`` (over the same LightGBM), ``pulearn_bagging`` (trees),
PyOD's ``pyod_iforest`` and ``pyod_ecod`` (no labels), and the ``oracle`` (LightGBM on every true
train label: the ceiling).

pulearn and PyOD are an optional extra (``pip install -e ".[bench]"``); a method whose package is
missing is reported as skipped. Run::

    python -m learning.bench.peers --data ../shared/data/adbench_thyroid --out bench-out/peers

Writes ``report.json`` and ``report.md`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from learning import pool
from learning.baselines import (
    auto_learning_rate,
    auto_min_child_samples,
    fit_gbrt,
    lgbm_params,
)
from learning.bench.harness import Harness, Settings, Split, split_cases
from learning.evaluation import ranking_metrics
from learning.features import Dataset, load_dataset
from learning.loop import ActiveLoop

PROJECT = "two_step_pu"
# pulearn's methods that run with their own estimate of the prior (or of the label frequency):
# the ones the project's learner is compared against.
PULEARN_OWN_PRIOR = (
    "pulearn_nnpu_histogram",
    "pulearn_nnpu_scar_em",
    "pulearn_elkanoto",
    "pulearn_weighted_elkanoto",
    "pulearn_bagging",
)
METHODS = (
    PROJECT,
    "naive_pu",
    *PULEARN_OWN_PRIOR,
    "pulearn_nnpu_true_prior",
    "pyod_iforest",
    "pyod_ecod",
    "oracle",
)
TEST_SHARE = 0.3
LABEL_FRACTION = 0.1


@dataclass
class Problem:
    """One seeds-only problem: train matrix and PU labels, test matrix and truth."""

    name: str
    seed: int
    X_train: np.ndarray
    s_train: np.ndarray  # 1 = labeled positive, 0 = unlabeled
    y_train: np.ndarray  # the truth, for the oracle and the true prior only
    X_test: np.ndarray
    y_test: np.ndarray
    categorical: list[int]
    loop: ActiveLoop

    @functools.cached_property
    def _imputed(self) -> tuple[np.ndarray, np.ndarray]:
        imp = SimpleImputer(strategy="median", keep_empty_features=True).fit(self.X_train)
        return imp.transform(self.X_train), imp.transform(self.X_test)

    @functools.cached_property
    def _standardized(self) -> tuple[np.ndarray, np.ndarray]:
        train, test = self._imputed
        scaler = StandardScaler().fit(train)
        return scaler.transform(train), scaler.transform(test)

    def imputed(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and test matrices, median-imputed on the train part (computed once)."""
        return self._imputed

    def standardized(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`imputed`, then standardized on the train part (computed once)."""
        return self._standardized


def peer_split(ds: Dataset, seed: int) -> Split:
    """The harness's time split where cases have ``ts``, else a stratified 70/30 split."""
    if ds.ts is not None:
        return split_cases(ds, seed=seed)
    train, test = train_test_split(
        np.arange(ds.n_cases), test_size=TEST_SHARE, stratify=ds.labels, random_state=seed
    )
    return Split(np.sort(train), np.sort(test), f"stratified random {1 - TEST_SHARE:.0%}/30%")


def build_problem(ds: Dataset, seed: int, log: Callable[[str], None]) -> Problem:
    settings = Settings.from_kwargs(seed=seed, seed_fraction=LABEL_FRACTION, methods=())
    h = Harness(ds, settings, None, log, split=peer_split(ds, seed))
    loop = h.loop_for("two_step_pu")
    X_all, spec = h.features(loop, h.pool_seed)
    train, test = h.split.pool, h.split.test
    return Problem(
        name=ds.name,
        seed=seed,
        X_train=X_all[train],
        s_train=h.pool_seed.astype(int),
        y_train=h.y[train],
        X_test=X_all[test],
        y_test=h.y[test],
        categorical=list(spec.categorical_indices),
        loop=loop,
    )


# --- the methods: each returns test scores (higher = more likely positive) and extra figures ---


def _two_step_pu(p: Problem) -> tuple[np.ndarray, dict]:
    model = p.loop.fit(
        p.X_train, pool.initial_states(p.s_train.astype(bool)), categorical_features=p.categorical
    )
    return model.predict_proba(p.X_test)[:, 1], {}


def _naive_pu(p: Problem) -> tuple[np.ndarray, dict]:
    booster = fit_gbrt(p.X_train, p.s_train, categorical_features=p.categorical, seed=p.seed)
    return booster.predict(p.X_test), {}


def _oracle(p: Problem) -> tuple[np.ndarray, dict]:
    booster = fit_gbrt(p.X_train, p.y_train, categorical_features=p.categorical, seed=p.seed)
    return booster.predict(p.X_test), {}


def _nnpu(p: Problem, prior: float) -> np.ndarray:
    from pulearn import NNPUClassifier

    train, test = p.standardized()
    model = NNPUClassifier(prior=prior, random_state=p.seed).fit(train, p.s_train)
    return model.predict_proba(test)[:, 1]


def _nnpu_estimated(estimator_name: str) -> Callable[[Problem], tuple[np.ndarray, dict]]:
    def run(p: Problem) -> tuple[np.ndarray, dict]:
        import pulearn

        train, _ = p.standardized()
        estimator = getattr(pulearn, estimator_name)()
        prior = float(estimator.estimate(train, p.s_train).pi)
        return _nnpu(p, prior), {"prior_estimate": prior, "prior_true": float(p.y_train.mean())}

    return run


def _nnpu_true_prior(p: Problem) -> tuple[np.ndarray, dict]:
    prior = float(p.y_train.mean())
    return _nnpu(p, prior), {"prior_true": prior}


def _lgbm(n_rows: int) -> object:
    """The GBRT the project's learners use (same leaves and learning rate for ``n_rows``)."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        **lgbm_params(
            min_child_samples=auto_min_child_samples(n_rows),
            learning_rate=auto_learning_rate(n_rows),
            n_jobs=1,
        )
    )


def _elkanoto(p: Problem) -> tuple[np.ndarray, dict]:
    from pulearn import ElkanotoPuClassifier

    train, test = p.imputed()
    model = ElkanotoPuClassifier(_lgbm(len(train)), hold_out_ratio=0.1, random_state=p.seed)
    model.fit(train, p.s_train)
    return model.predict_proba(test)[:, 1], {}


def _weighted_elkanoto(p: Problem) -> tuple[np.ndarray, dict]:
    from pulearn import WeightedElkanotoPuClassifier

    train, test = p.imputed()
    n_pos = int(p.s_train.sum())
    model = WeightedElkanotoPuClassifier(
        _lgbm(len(train)),
        labeled=n_pos,
        unlabeled=len(p.s_train) - n_pos,
        hold_out_ratio=0.1,
        random_state=p.seed,
    )
    model.fit(train, p.s_train)
    return model.predict_proba(test)[:, 1], {}


def _bagging(p: Problem) -> tuple[np.ndarray, dict]:
    from pulearn import BaggingPuClassifier

    train, test = p.imputed()
    n_pos = int(p.s_train.sum())
    # Mordelet & Vert: each tree sees every positive and as many unlabeled cases.
    model = BaggingPuClassifier(n_estimators=100, max_samples=n_pos, n_jobs=1, random_state=p.seed)
    model.fit(train, p.s_train)
    return model.predict_proba(test)[:, 1], {}


def _pyod(name: str) -> Callable[[Problem], tuple[np.ndarray, dict]]:
    def run(p: Problem) -> tuple[np.ndarray, dict]:
        if name == "iforest":
            from pyod.models.iforest import IForest as Detector
        else:
            from pyod.models.ecod import ECOD as Detector
        train, test = p.imputed()
        kwargs = {"random_state": p.seed} if name == "iforest" else {}
        return Detector(**kwargs).fit(train).decision_function(test), {}

    return run


RUNNERS: dict[str, Callable[[Problem], tuple[np.ndarray, dict]]] = {
    PROJECT: _two_step_pu,
    "naive_pu": _naive_pu,
    "pulearn_nnpu_histogram": _nnpu_estimated("HistogramMatchPriorEstimator"),
    "pulearn_nnpu_scar_em": _nnpu_estimated("ScarEMPriorEstimator"),
    "pulearn_nnpu_true_prior": _nnpu_true_prior,
    "pulearn_elkanoto": _elkanoto,
    "pulearn_weighted_elkanoto": _weighted_elkanoto,
    "pulearn_bagging": _bagging,
    "pyod_iforest": _pyod("iforest"),
    "pyod_ecod": _pyod("ecod"),
    "oracle": _oracle,
}


def run_method(p: Problem, name: str) -> dict:
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, extra = RUNNERS[name](p)
    except ImportError as exc:
        return {"skipped": f"{exc.name or exc} is not installed (pip install -e '.[bench]')"}
    except (ValueError, RuntimeError) as exc:
        if name == PROJECT:
            raise
        # A peer that cannot run on this problem (e.g. Elkan-Noto's hold-out without a single
        # labeled positive) is reported as failed, with its own message.
        return {"skipped": f"failed: {exc}"}
    metrics = ranking_metrics(p.y_test, np.nan_to_num(np.asarray(scores, dtype=np.float64)))
    return {
        "pr_auc": metrics["pr_auc"],
        "roc_auc": metrics["roc_auc"],
        "recall_at_precision_0.8": metrics["recall_at_precision"]["0.8"],
        "seconds": time.perf_counter() - t0,
        **extra,
    }


def run_dataset(
    data_dir: str | Path,
    *,
    seeds: list[int],
    methods: tuple[str, ...] = METHODS,
    log: Callable[[str], None] = print,
) -> dict:
    """Every method on one dataset, once per seed; per-seed figures and their mean."""
    ds = load_dataset(data_dir)
    if ds.labels is None:
        raise ValueError(f"{data_dir} has no label column: the benchmark needs the truth")
    if ds.ts is not None:
        seeds = seeds[:1]  # a time split and a seed rule: every seed is the same problem
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in seeds:
        p = build_problem(ds, seed, log)
        log(
            f"{ds.name} seed {seed}: train {len(p.s_train)} ({int(p.s_train.sum())} labeled, "
            f"{int(p.y_train.sum())} true positives), test {len(p.y_test)} "
            f"({int(p.y_test.sum())} positives)"
        )
        for name in methods:
            result = run_method(p, name)
            runs[name].append(result)
            if "skipped" in result:
                log(f"  {name}: skipped ({result['skipped']})")
            else:
                log(f"  {name}: PR-AUC {result['pr_auc']:.3f} ({result['seconds']:.1f} s)")
    summary = {}
    for name, results in runs.items():
        done = [r for r in results if "skipped" not in r]
        if not done:
            summary[name] = {"skipped": results[0]["skipped"]}
            continue
        pr = np.array([r["pr_auc"] for r in done])
        summary[name] = {
            "pr_auc": float(pr.mean()),
            "pr_auc_std": float(pr.std()),
            "recall_at_precision_0.8": float(np.mean([r["recall_at_precision_0.8"] for r in done])),
            "seconds": float(np.mean([r["seconds"] for r in done])),
            "n_runs": len(done),
            "n_failed": len(results) - len(done),
        }
        priors = [r["prior_estimate"] for r in done if "prior_estimate" in r]
        if priors:
            summary[name]["prior_estimate"] = float(np.mean(priors))
            summary[name]["prior_true"] = float(np.mean([r["prior_true"] for r in done]))
    return {
        "dataset": ds.name,
        "seeds": seeds,
        "split": "time"
        if ds.ts is not None
        else f"stratified {1 - TEST_SHARE:.0%}/{TEST_SHARE:.0%}",
        "methods": summary,
        "runs": runs,
        "verdict": verdict(summary),
    }


def verdict(summary: dict) -> dict:
    """Whether the project's learner is at least as good as every pulearn method run with its
    own prior estimate (PR-AUC means), and by how much the best of them differs."""
    ours = summary.get(PROJECT, {}).get("pr_auc")
    peers = {m: summary[m]["pr_auc"] for m in PULEARN_OWN_PRIOR if "pr_auc" in summary.get(m, {})}
    if ours is None or not peers:
        return {"compared": False}
    best = max(peers, key=peers.get)
    return {
        "compared": True,
        "best_pulearn": best,
        "best_pulearn_pr_auc": peers[best],
        "margin": ours - peers[best],
        "at_least_every_pulearn": all(ours >= v for v in peers.values()),
    }


def report_markdown(reports: list[dict], methods: tuple[str, ...]) -> str:
    lines = [
        "Test PR-AUC, mean over seeds (± std); seeds only (no expert labels).",
        "",
        "| method | " + " | ".join(r["dataset"] for r in reports) + " |",
        "|---|" + "---|" * len(reports),
    ]
    for name in methods:
        cells = []
        for r in reports:
            m = r["methods"].get(name, {})
            if "pr_auc" not in m:
                cells.append("skipped" if "not installed" in m.get("skipped", "") else "failed")
                continue
            cell = f"{m['pr_auc']:.3f} ± {m['pr_auc_std']:.3f}"
            if m.get("n_failed"):
                cell += f" ({m['n_runs']} of {m['n_runs'] + m['n_failed']} seeds ran)"
            cells.append(cell)
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| dataset | best pulearn (own prior) | its PR-AUC | project − best "
        "| project ≥ every pulearn |",
        "|---|---|---|---|---|",
    ]
    for r in reports:
        v = r["verdict"]
        if v.get("compared"):
            lines.append(
                f"| {r['dataset']} | `{v['best_pulearn']}` | {v['best_pulearn_pr_auc']:.3f} | "
                f"{v['margin']:+.3f} | {'yes' if v['at_least_every_pulearn'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="dataset folder (repeat)")
    parser.add_argument("--out", default="bench-out/peers")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = tuple(args.methods)
    reports = []
    for data in args.data:
        reports.append(run_dataset(data, seeds=args.seeds, methods=methods))
        (out / "report.json").write_text(json.dumps(reports, indent=2, default=float))
    text = report_markdown(reports, methods)
    (out / "report.md").write_text(text)
    print(text)
    return reports


if __name__ == "__main__":
    main()

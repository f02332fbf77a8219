"""Audit quality on planted label noise: ``python -m learning.bench.noise [--out DIR]``.

For each dataset and repetition: 10% of the seed positives are swapped for random true negatives
(P keeps its size; a tenth of it is now wrong). The audit (:func:`learning.noise.audit_labels`
with out-of-fold LightGBM P-vs-U scores and the scaled hand features as neighbour space) flags
positives; we report the precision and recall of the flags against the planted ones, per signal
and combined ("either": what the audit page lists; "both": flagged by both signals), and the
PR-AUC of two-step PU (:class:`learning.pu.TwoStepPU`) trained on the noisy P, on P cleaned by
the audit (positives flagged by either signal go back to U; "cleaned_both": only those flagged by
both), and on the noise-free P as a reference. PR-AUC is measured on the same cases every time:
all cases outside the noisy P, with the ground-truth ``label``.

``fraud_handbook`` is subsampled uniformly (``--fraud-sample``, default 300,000 of its 1.17M
cases) to keep the shared machine usable; ``adbench_*`` sets have no seed column, so seeds are
drawn from the true positives with label frequency ``--label-frequency``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from learning.neighbors import neighbor_matrix
from learning.noise import CONFIDENT_LEARNING, NEAR_CLEAN, audit_labels, out_of_fold_scores
from learning.shared_data import FRAUD_HANDBOOK_HAND_COLUMNS, SHARED_DATA_DIR

DATA_DIR = SHARED_DATA_DIR
NOISE_RATE = 0.10
FRAUD_COLUMNS = FRAUD_HANDBOOK_HAND_COLUMNS
SIGNALS = {
    "confident_learning": (CONFIDENT_LEARNING,),
    "near_clean": (NEAR_CLEAN,),
    "either": None,
    "both": "both",
}


def _log(message: str) -> None:
    print(f"[noise_benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True)


def load(name: str, *, fraud_sample: int, label_frequency: float, seed: int):
    """Features, seed positives and ground truth of one dataset (seeds drawn where absent)."""
    path = DATA_DIR / name / "cases.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the benchmark needs ../shared/data")
    rng = np.random.default_rng(seed)
    if name == "fraud_handbook":
        cases = pd.read_parquet(path, columns=[*FRAUD_COLUMNS, "seed_positive", "label"])
        if fraud_sample and len(cases) > fraud_sample:
            cases = cases.iloc[np.sort(rng.choice(len(cases), fraud_sample, replace=False))]
        X = cases[FRAUD_COLUMNS].to_numpy(np.float32)
        seeds = cases["seed_positive"].to_numpy().astype(bool)
    else:
        cases = pd.read_parquet(path)
        columns = [c for c in cases.columns if c.startswith("f")]
        X = cases[columns].to_numpy(np.float32)
        truth = cases["label"].to_numpy().astype(bool)
        seeds = np.zeros(len(cases), dtype=bool)
        pos = np.flatnonzero(truth)
        seeds[rng.choice(pos, int(round(label_frequency * len(pos))), replace=False)] = True
    return X, seeds, cases["label"].to_numpy().astype(bool)


def corrupt(
    seeds: np.ndarray, labels: np.ndarray, rate: float, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Swap ``rate`` of the seeds for random true negatives; returns (noisy seeds, planted)."""
    seed_rows = np.flatnonzero(seeds)
    n_fake = max(1, int(round(rate * len(seed_rows))))
    dropped = rng.choice(seed_rows, n_fake, replace=False)
    fakes = rng.choice(np.flatnonzero(~labels & ~seeds), n_fake, replace=False)
    noisy = seeds.copy()
    noisy[dropped] = False
    noisy[fakes] = True
    planted = np.zeros_like(seeds)
    planted[fakes] = True
    return noisy, planted


def _pr(flagged: np.ndarray, planted: np.ndarray) -> dict:
    hits = int((flagged & planted).sum())
    return {
        "flagged": int(flagged.sum()),
        "precision": hits / flagged.sum() if flagged.any() else float("nan"),
        "recall": hits / planted.sum() if planted.any() else float("nan"),
    }


def _pu_scores(X, s, *, seed: int, n_jobs: int) -> np.ndarray:
    from learning.pu import TwoStepPU

    model = TwoStepPU(random_state=seed, n_jobs=n_jobs, max_unlabeled=200_000)
    return model.fit(X, s.astype(int)).predict_proba(X)[:, 1]


def run_one(name: str, X, seeds, labels, *, rep: int, n_jobs: int) -> dict:
    rng = np.random.default_rng(1000 + rep)
    noisy, planted = corrupt(seeds, labels, NOISE_RATE, rng)
    started = time.perf_counter()
    oof = out_of_fold_scores(X, noisy, n_splits=5, random_state=rep)
    space, _ = neighbor_matrix(None, X)
    report = audit_labels(noisy, oof_scores=oof, neighbor_space=space, random_state=rep)
    audit_s = time.perf_counter() - started
    _log(f"{name} rep {rep}: audit of {len(noisy):,} cases in {audit_s:.0f}s")
    flags = {
        key: report.mask(len(noisy), methods)
        for key, methods in SIGNALS.items()
        if methods != "both"
    }
    flags["both"] = flags["confident_learning"] & flags["near_clean"]
    cleaned = noisy & ~flags["either"]
    evaluate = ~noisy
    pr_auc = {}
    variants = (
        ("noisy", noisy),
        ("cleaned", cleaned),
        ("cleaned_both", noisy & ~flags["both"]),
        ("noise_free", noisy & ~planted),
    )
    for key, s in variants:
        scores = _pu_scores(X, s, seed=rep, n_jobs=n_jobs)
        pr_auc[key] = float(average_precision_score(labels[evaluate], scores[evaluate]))
        _log(f"{name} rep {rep}: two-step PU on {key} P: PR-AUC {pr_auc[key]:.4f}")
    row = {
        "dataset": name,
        "rep": rep,
        "n_cases": len(noisy),
        "n_positives": int(noisy.sum()),
        "n_planted": int(planted.sum()),
        "estimated_noise_rate": report.confident_learning.noise_rate,
        "flags": {key: _pr(mask, planted) for key, mask in flags.items()},
        "pr_auc": pr_auc,
        "audit_seconds": audit_s,
    }
    _log(
        f"{name} rep {rep}: flags {row['flags']['either']}, PR-AUC noisy {pr_auc['noisy']:.4f} "
        f"cleaned {pr_auc['cleaned']:.4f} noise-free {pr_auc['noise_free']:.4f}"
    )
    return row


def summarize(rows: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        out[name] = {
            "reps": len(mine),
            "n_cases": mine[0]["n_cases"],
            "n_positives": mine[0]["n_positives"],
            "n_planted": mine[0]["n_planted"],
            "flags": {
                key: {
                    m: float(np.nanmean([r["flags"][key][m] for r in mine]))
                    for m in ("flagged", "precision", "recall")
                }
                for key in SIGNALS
            },
            "pr_auc": {
                key: float(np.mean([r["pr_auc"][key] for r in mine]))
                for key in ("noisy", "cleaned", "cleaned_both", "noise_free")
            },
            "cleaning_never_worse": all(
                r["pr_auc"]["cleaned"] >= r["pr_auc"]["noisy"] - 1e-9 for r in mine
            ),
            "pr_auc_per_rep": [{k: round(v, 4) for k, v in r["pr_auc"].items()} for r in mine],
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--datasets", nargs="+", default=["fraud_handbook", "adbench_PageBlocks"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fraud-sample", type=int, default=300_000)
    parser.add_argument("--label-frequency", type=float, default=0.5)
    parser.add_argument("--n-jobs", type=int, default=1)
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets:
        for rep in range(args.reps):
            X, seeds, labels = load(
                name, fraud_sample=args.fraud_sample, label_frequency=args.label_frequency,
                seed=rep,
            )  # fmt: skip
            rows.append(run_one(name, X, seeds, labels, rep=rep, n_jobs=args.n_jobs))
    report = {
        "noise_rate": NOISE_RATE,
        "corruption": "10% of seed positives swapped for random true negatives",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "summary": summarize(rows),
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noise_audit.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))
    return report


if __name__ == "__main__":
    main()

"""Two-step PU with and without the kNN feature, on datasets with known truth.

Command line::

    python -m learning.bench.knn_feature DATA_DIR [DATA_DIR ...] [--seeds 3] [--known 0.2]

For each dataset folder (the dataset format: numeric columns and a ``label``) and seed, a random
share ``--known`` of the true positives is P (the rest of the cases is U), a
:class:`learning.pu.TwoStepPU` is trained on the numeric columns alone and on the numeric
columns plus :data:`learning.knn_feature.KNN_FEATURE` (k=10 in the robustly scaled numeric
columns, P as the positives, each case left out), and the PR-AUC of its scores over U against
the hidden labels is printed, one row per dataset with the mean over seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from learning.features import load_dataset
from learning.knn_feature import knn_index, knn_positive_share, knn_space
from learning.pu import TwoStepPU


def pr_auc_pair(
    X: np.ndarray, truth: np.ndarray, *, known: float, seed: int
) -> tuple[float, float]:
    """PR-AUC over U without and with the kNN feature, for one random P."""
    rng = np.random.default_rng(seed)
    labeled = truth & (rng.random(len(truth)) < known)
    unlabeled = ~labeled
    share = knn_positive_share(knn_index(knn_space(None, X), random_state=seed), labeled)
    result = []
    for features in (X, np.column_stack([X, share])):
        model = TwoStepPU(n_jobs=1, random_state=seed).fit(features, labeled.astype(int))
        scores = model.predict_proba(features)[:, 1]
        result.append(average_precision_score(truth[unlabeled], scores[unlabeled]))
    return result[0], result[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learning.bench.knn_feature")
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--known", type=float, default=0.2, help="share of positives in P")
    args = parser.parse_args(argv)
    print(
        "| dataset | cases | positives | PR-AUC without | PR-AUC with kNN feature "
        "| change (per seed: min, max) |"
    )
    print("|---|---|---|---|---|---|")
    for folder in args.datasets:
        data = load_dataset(folder)
        X = data.cases[list(data.numeric_columns)].to_numpy(dtype=np.float32)
        truth = np.asarray(data.labels) == 1
        pairs = np.array(
            [pr_auc_pair(X, truth, known=args.known, seed=s) for s in range(args.seeds)]
        )
        without, with_knn = pairs.mean(axis=0)
        change = pairs[:, 1] - pairs[:, 0]
        print(
            f"| {folder.name} | {len(X):,} | {int(truth.sum())} | {without:.3f} | "
            f"{with_knn:.3f} | {with_knn - without:+.3f} "
            f"({change.min():+.3f}, {change.max():+.3f}) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

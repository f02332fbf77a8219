"""Speed of one loop iteration on fraud_handbook (1.17M cases) against one plain LightGBM fit.

An iteration is what the app's worker does per batch: recompute the label-derived features from
P, fit :class:`~learning.pu.TwoStepPU`, score every case, select the next batch. The reference is
one plain LightGBM fit (P vs U, same features, same number of trees, same threads) in the same
process. Writes ``speed_learning.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from learning.baselines import fit_gbrt
from learning.features import entity_deviation_features, label_derived_features, load_dataset
from learning.pu import TwoStepPU
from learning.sampling import select_batch

DEFAULT_DATA = Path(
    os.environ.get("SHARED_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data")
)
QUICK_CASES = 100_000
N_TREES = 100
N_THREADS = int(os.environ.get("SPEED_THREADS", "1"))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(out_dir: Path, quick: bool = False, *, data_dir: Path | None = None) -> dict:
    """Time one iteration and one plain fit; write ``out_dir / "speed_learning.json"``.

    Parameters
    ----------
    out_dir : Path
    quick : bool
        Use the first 100,000 cases only (a smoke run, not the figure to report).
    data_dir : Path, optional
        The fraud_handbook folder; default ``$SHARED_DATA/fraud_handbook`` or ``../shared/data``.

    Returns
    -------
    dict
        The JSON written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir or DEFAULT_DATA / "fraud_handbook")
    t0 = time.perf_counter()
    ds = load_dataset(data_dir)
    if quick:
        ds.cases = ds.cases.iloc[:QUICK_CASES].reset_index(drop=True)
        ds.seed_positive = ds.seed_positive[:QUICK_CASES]
    load_s = time.perf_counter() - t0
    n = len(ds.cases)
    hand = ds.feature_frame().to_numpy(dtype=np.float32)
    seeds = ds.seed_positive.astype(bool)
    s = seeds.astype(int)
    entity_columns = ds.identifier_columns()
    print(
        f"speed: {n} cases, {hand.shape[1]} hand features, {int(s.sum())} seeds, "
        f"{N_THREADS} thread(s)",
        flush=True,
    )

    def features(positive: np.ndarray) -> np.ndarray:
        # As the app's iteration builds them: hand, entity deviation (label-free), label-derived.
        dev = entity_deviation_features(ds.cases, ds.numeric_columns)
        ld = label_derived_features(
            ds.cases, positive, columns=entity_columns, windows_days=(1, 7, 28)
        )
        return np.hstack([hand, dev.to_numpy(dtype=np.float32), ld.to_numpy(dtype=np.float32)])

    # The iteration: features from P, two-step PU, score everything, select a batch.
    t = time.perf_counter()
    X = features(seeds)
    features_s = time.perf_counter() - t
    model = TwoStepPU(
        n_estimators=N_TREES,
        n_estimators_em=N_TREES // 2,
        max_unlabeled=100_000,
        n_jobs=N_THREADS,
        random_state=0,
    )
    t = time.perf_counter()
    model.fit(X, s)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    scores = model.predict_proba(X)[:, 1]
    score_s = time.perf_counter() - t
    t = time.perf_counter()
    batch = select_batch(
        scores, X, 100, candidate_mask=~seeds, top_score_share=0.5, n_clusters=10, random_state=0
    )
    select_s = time.perf_counter() - t
    iteration_s = features_s + fit_s + score_s + select_s
    peak_after_iteration = _peak_rss_mib()
    print(
        f"speed: iteration {iteration_s:.1f} s (features {features_s:.1f}, fit {fit_s:.1f}, "
        f"score {score_s:.1f}, select {select_s:.1f})",
        flush=True,
    )

    # The reference: one plain LightGBM fit of P vs U on the same features and trees.
    t = time.perf_counter()
    fit_gbrt(X, s, n_estimators=N_TREES, n_jobs=N_THREADS, seed=0)
    plain_s = time.perf_counter() - t
    print(
        f"speed: plain LightGBM fit {plain_s:.1f} s; ratio {iteration_s / plain_s:.2f}", flush=True
    )

    result = {
        "dataset": ds.name,
        "n_cases": n,
        "n_features": int(X.shape[1]),
        "quick": quick,
        "threads": N_THREADS,
        "n_trees": N_TREES,
        "two_step": {
            "n_estimators_em": N_TREES // 2,
            "max_unlabeled": 100_000,
            "em_rounds": [model.em_rounds_step1, model.em_rounds_step2],
            "history": model.history_,
        },
        "load_seconds": load_s,
        "iteration_seconds": iteration_s,
        "iteration_parts_seconds": {
            "features": features_s,
            "two_step_fit": fit_s,
            "score_all": score_s,
            "select_batch": select_s,
        },
        "plain_lightgbm_fit_seconds": plain_s,
        "ratio": iteration_s / plain_s,
        "target_ratio": 3.0,
        "batch_size": int(len(batch)),
        "peak_rss_mib_after_iteration": peak_after_iteration,
        "peak_rss_mib": _peak_rss_mib(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    (out_dir / "speed_learning.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.out, args.quick)

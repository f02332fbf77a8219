"""Speed of the neighbour index against exact search on ``fraud_handbook`` case embeddings.

``python manage.py benchmark_speed --part neighbors --out DIR [--quick]`` calls :func:`main`,
which writes ``DIR/speed_neighbors.json`` (and ``DIR/speed_neighbors.png``): build time,
recall@10 against exact search, single-query p50/p99 and batch queries/s for the HNSW index and
for exact search. Queries are indexed cases (the app asks for the neighbours of a case), each
case left out of its own list.

Embeddings come from ``encoders.api.embeddings_for_dataset`` (cache in ``$EMBEDDING_CACHE_DIR``,
default ``var/embedding-cache``) when the encoders package is installed; a full run computes them
if they are not cached, ``--quick`` only uses a cache. Without them the benchmark says so and
uses a stand-in of the same shape: random Fourier features of the scaled hand features.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from learning.neighbors import FeatureScaling, NeighborIndex, recall_at_k
from learning.shared_data import FRAUD_HANDBOOK_HAND_COLUMNS, SHARED_DATA_DIR

DATA_DIR = SHARED_DATA_DIR
DATASET = "fraud_handbook"
HAND_COLUMNS = FRAUD_HANDBOOK_HAND_COLUMNS
STAND_IN_DIM = 64  # the encoder's default out_dim
QUICK_SAMPLE = 200_000
K = 10
EF_SWEEP = (16, 32, 64, 128, 256)
TARGET_RECALL = 0.95


def _log(message: str) -> None:
    print(f"[neighbors_speed {time.strftime('%H:%M:%S')}] {message}", flush=True)


def stand_in_embeddings(hand: np.ndarray, dim: int = STAND_IN_DIM, seed: int = 0) -> np.ndarray:
    """Random Fourier features of robustly scaled hand features, shape (n, dim) float32.

    A stand-in of the encoder's output shape for when no real embeddings are available: a smooth
    non-linear map of the hand features (their intrinsic dimension, not a sequence model's).
    """
    Z = FeatureScaling.fit(hand).transform(hand)
    rng = np.random.default_rng(seed)
    W = rng.normal(scale=1.0 / np.sqrt(Z.shape[1]), size=(Z.shape[1], dim)).astype(np.float32)
    b = rng.uniform(0, 2 * np.pi, size=dim).astype(np.float32)
    return (np.sqrt(2.0 / dim) * np.cos(Z @ W + b)).astype(np.float32)


def load_embeddings(data_dir: Path, *, quick: bool) -> tuple[np.ndarray, str]:
    """The dataset's case embeddings and a line saying where they came from."""
    cache_dir = Path(os.environ.get("EMBEDDING_CACHE_DIR", "var/embedding-cache"))
    try:
        from encoders import api as encoders_api
    except ImportError as exc:
        reason = f"encoders.api not available ({exc})"
    else:
        key = encoders_api.dataset_fingerprint(data_dir)
        cached = cache_dir / f"embeddings-{key}.npy"
        if cached.exists() or not quick:
            _log(f"embeddings from encoders.api.embeddings_for_dataset (cache {cache_dir})")
            emb = encoders_api.embeddings_for_dataset(data_dir, cache_dir=cache_dir)
            return np.asarray(emb, dtype=np.float32), f"encoder embeddings ({cached})"
        reason = f"no cached encoder embeddings at {cached} (--quick does not compute them)"
    _log(f"STAND-IN embeddings: {reason}")
    hand = pd.read_parquet(data_dir / "cases.parquet", columns=HAND_COLUMNS).to_numpy(np.float32)
    source = (
        f"STAND-IN, not encoder output: {reason}; random Fourier features (dim {STAND_IN_DIM}) "
        "of the robustly scaled hand features"
    )
    return stand_in_embeddings(hand), source


def _latencies(fn, queries: np.ndarray) -> np.ndarray:
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        started = time.perf_counter()
        fn(q[None, :])
        out[i] = time.perf_counter() - started
    return out


def _summary(latencies: np.ndarray) -> dict:
    return {
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "queries_per_s": float(len(latencies) / latencies.sum()),
        "n_queries": len(latencies),
    }


def _self_free(indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Drop each query's own row from a (n, K+1) neighbour list (or the last column)."""
    is_self = indices == rows[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), indices.shape[1] - 1)
    keep = np.ones(indices.shape, dtype=bool)
    keep[np.arange(len(rows)), drop] = False
    return indices[keep].reshape(len(rows), indices.shape[1] - 1)


def exact_single_query_by_size(dim: int, sizes=(5_000, 20_000, 50_000), seed: int = 0) -> list:
    """Single-query latency of exact search at small sizes (where ``method="auto"`` switches)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        X = rng.normal(size=(n, dim)).astype(np.float32)
        index = NeighborIndex(method="exact").fit(X)
        lat = _latencies(lambda q, index=index: index.kneighbors(q, K), X[:200])
        rows.append({"n_samples": n, **_summary(lat)})
    return rows


def main(out_dir: Path, quick: bool) -> dict:
    """Run the benchmark; write ``out_dir/speed_neighbors.json`` and return the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = DATA_DIR / DATASET
    if not (data_dir / "cases.parquet").exists():
        raise FileNotFoundError(f"{data_dir} not found: the benchmark needs ../shared/data")
    started_all = time.perf_counter()
    X, source = load_embeddings(data_dir, quick=quick)
    n_total = len(X)
    rng = np.random.default_rng(0)
    if quick and len(X) > QUICK_SAMPLE:
        X = X[np.sort(rng.choice(len(X), size=QUICK_SAMPLE, replace=False))]
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, dim = X.shape
    threads = int(os.environ.get("NEIGHBORS_THREADS", os.cpu_count() or 1))
    _log(f"{n:,} x {dim} embeddings (of {n_total:,}); {threads} threads; {source}")

    n_queries = 300 if quick else 1000
    n_exact_single = 20 if quick else 40
    query_rows = rng.choice(n, size=n_queries, replace=False)
    queries = X[query_rows]

    started = time.perf_counter()
    exact = NeighborIndex(method="exact").fit(X)
    exact_build = time.perf_counter() - started
    _log("exact search: batch ground truth")
    started = time.perf_counter()
    _, truth = exact.kneighbors(queries, K + 1)
    exact_batch_s = time.perf_counter() - started
    truth = _self_free(truth, query_rows)
    _log(f"exact batch: {n_queries / exact_batch_s:.1f} queries/s; single queries")
    exact_single = _latencies(lambda q: exact.kneighbors(q, K + 1), queries[:n_exact_single])

    # --quick must finish in about a minute on 2 busy cores: a cheaper graph, tuned ef_search.
    M, ef_construction = (12, 40) if quick else (16, 100)
    _log(f"building HNSW (M={M}, ef_construction={ef_construction})")
    index = NeighborIndex(
        method="hnsw",
        M=M,
        ef_construction=ef_construction,
        target_recall=TARGET_RECALL,
        n_tuning_queries=200,
        n_jobs=threads,
    ).fit(X)
    _log(f"built in {index.build_seconds_:.1f}s; ef_search chosen {index.ef_search_}")

    sweep = []
    for ef in EF_SWEEP:
        index._hnsw.set_ef(ef)
        started = time.perf_counter()
        _, found = index.kneighbors(queries, K + 1)
        batch_s = time.perf_counter() - started
        sweep.append(
            {
                "ef_search": ef,
                "recall_at_10": recall_at_k(_self_free(found, query_rows), truth),
                "batch_queries_per_s": n_queries / batch_s,
            }
        )
    index._hnsw.set_ef(index.ef_search_)
    index.set_params(n_jobs=1)  # single queries: one thread, as a web request would
    index_single = _latencies(lambda q: index.kneighbors(q, K + 1), queries)
    index.set_params(n_jobs=threads)
    started = time.perf_counter()
    _, found = index.kneighbors(queries, K + 1)
    index_batch_s = time.perf_counter() - started
    recall = recall_at_k(_self_free(found, query_rows), truth)

    index_single_summary = _summary(index_single)
    exact_single_summary = _summary(exact_single)
    speedup = index_single_summary["queries_per_s"] / exact_single_summary["queries_per_s"]
    report = {
        "recall_at_10": recall,
        "speedup": speedup,
        "dataset": DATASET,
        "embeddings": source,
        "n_samples": n,
        "n_samples_dataset": n_total,
        "dim": dim,
        "quick": quick,
        "threads": threads,
        "k": K,
        "queries": f"{n_queries} indexed cases at random, each left out of its own list",
        "index": {
            "method": "hnsw (hnswlib)",
            "M": M,
            "ef_construction": ef_construction,
            "ef_search": index.ef_search_,
            "ef_search_tuning": index.tuning_,
            "build_seconds": index.build_seconds_,
            "single_query": index_single_summary,
            "batch_queries_per_s": n_queries / index_batch_s,
            "recall_at_10": recall,
        },
        "exact": {
            "method": "exact (NumPy/BLAS, chunked)",
            "build_seconds": exact_build,
            "single_query": exact_single_summary,
            "batch_queries_per_s": n_queries / exact_batch_s,
        },
        "batch_speedup": (n_queries / index_batch_s) / (n_queries / exact_batch_s),
        "ef_sweep": sweep,
        "exact_single_query_by_size": exact_single_query_by_size(dim),
        "goal": {
            "recall_at_10_min": TARGET_RECALL,
            "speedup_min": 50,
            "p99_ms_max": 10,
            "met": bool(
                recall >= TARGET_RECALL and speedup >= 50 and index_single_summary["p99_ms"] <= 10
            ),
        },
        "seconds_total": time.perf_counter() - started_all,
    }
    (out_dir / "speed_neighbors.json").write_text(json.dumps(report, indent=2))
    _plot(report, out_dir / "speed_neighbors.png")
    _log(
        f"recall@10 {recall:.3f}, speedup {speedup:.0f}x, "
        f"p99 {index_single_summary['p99_ms']:.2f} ms, total {report['seconds_total']:.0f}s"
    )
    return report


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sweep = report["ef_sweep"]
    ax.plot([s["recall_at_10"] for s in sweep], [s["batch_queries_per_s"] for s in sweep], "o-",
            label="HNSW (ef_search sweep)")  # fmt: skip
    for s in sweep:
        ax.annotate(f"ef={s['ef_search']}", (s["recall_at_10"], s["batch_queries_per_s"]))
    ax.axhline(report["exact"]["batch_queries_per_s"], color="grey", ls="--", label="exact")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 against exact search")
    ax.set_ylabel("batch queries/s")
    ax.set_title(
        f"{report['n_samples']:,} x {report['dim']} ({'quick' if report['quick'] else 'full'})"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    print(
        json.dumps(
            main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out"), "--quick" in sys.argv),
            indent=2,
        )
    )

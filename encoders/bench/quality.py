"""Quality of the embeddings on a dataset with known truth (fraud_handbook by default).

Pool = cases before ``--split`` (April-June), test = from it on (July). Compared, on the test
months, with the ``label`` column (ground truth, read here only because this is a benchmark):

- a logistic-regression probe on the embeddings alone: pretrained encoder vs the same encoder
  randomly initialized;
- LightGBM on the hand features alone vs hand features + pretrained embeddings.

Metrics: ROC AUC, PR-AUC (average precision), recall at precision 0.8. Writes ``quality.json``,
``quality.md`` and ``embedding_map.png`` into ``--out``.

    python -m encoders.bench.quality --data ../shared/data/fraud_handbook --out bench-out/quality
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.pretrain import PretrainConfig

EXCLUDED_HAND = {"terminal_id"}  # 10k-level categorical: an id, not a hand feature


def recall_at_precision(y: np.ndarray, score: np.ndarray, precision: float = 0.8) -> float:
    from sklearn.metrics import precision_recall_curve

    p, r, _ = precision_recall_curve(y, score)
    ok = p >= precision
    return float(r[ok].max()) if ok.any() else 0.0


def metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "roc_auc": round(float(roc_auc_score(y, score)), 4),
        "pr_auc": round(float(average_precision_score(y, score)), 4),
        "recall_at_p80": round(recall_at_precision(y, score, 0.8), 4),
    }


def probe(train_x, train_y, test_x, test_y, *, max_train: int, seed: int) -> dict[str, float]:
    """Standardized logistic regression on ``train_x`` (a random subsample of at most max_train)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(train_x), size=min(max_train, len(train_x)), replace=False))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0))
    model.fit(np.asarray(train_x[rows]), train_y[rows])
    return metrics(test_y, model.predict_proba(np.asarray(test_x))[:, 1])


def gbrt(train_x, train_y, test_x, test_y, *, seed: int) -> dict[str, float]:
    import lightgbm as lgb

    params = {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(train_x, train_y), num_boost_round=300)
    return metrics(test_y, booster.predict(test_x))


def hand_labels_split(
    cases: pd.DataFrame, schema: dict, split: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The hand feature columns (the schema's numeric and categorical ones but ids), the labels
    and the test mask (cases from ``split`` on) of a benchmark dataset's cases."""
    case_schema = schema.get("cases", {})
    hand = [
        c
        for c in case_schema.get("numeric", []) + case_schema.get("categorical", [])
        if c not in EXCLUDED_HAND and c in cases.columns
    ]
    y = cases["label"].to_numpy(np.int64)
    test = (pd.to_datetime(cases["ts"]) >= pd.Timestamp(split)).to_numpy()
    return hand, y, test


def embed_in_child(checkpoint: Path, data: Path, out: Path) -> dict:
    """Embed in a fresh process, returning its wall time and peak resident memory."""
    code = (
        "import json, resource, sys, time\n"
        "from pathlib import Path\n"
        "from encoders.api import embed_dataset\n"
        "from encoders.bench.memory import peak_rss_mb\n"
        "t = time.perf_counter()\n"
        "e = embed_dataset(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), resume=False)\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps({'seconds': round(time.perf_counter() - t, 1), 'rows': len(e),"
        " 'cpu_s': round(u.ru_utime + u.ru_stime, 1), 'peak_rss_mb': round(peak_rss_mb())}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(checkpoint), str(data), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fraud_handbook"))
    parser.add_argument("--out", type=Path, default=Path("bench-out/quality"))
    parser.add_argument("--split", default="2018-07-01", help="test = cases from this day on")
    parser.add_argument("--minutes", type=float, default=5.0, help="pretraining budget")
    parser.add_argument(
        "--clock",
        choices=["wall", "process"],
        default="process",
        help="budget in wall time or in this process's CPU time (fair on a busy machine)",
    )
    parser.add_argument("--probe-train", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="reuse checkpoints in --out")
    parser.add_argument(
        "--pit",
        action="store_true",
        help="add each numeric field's centered PIT to the vectors (AutoRiskConfig.pit)",
    )
    parser.add_argument(
        "--no-num-regression",
        action="store_true",
        help="without the Gaussian next-value head per numeric field whose z-score of the own "
        "value joins the vectors (AutoRiskConfig.num_regression, on for new encoders)",
    )
    args = parser.parse_args(argv)

    from encoders import checkpoint
    from encoders.api import (
        embedding_map_png,
        pretrain_for_dataset,
        random_checkpoint_for_dataset,
        read_schema,
        read_table,
    )

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"data": str(args.data), "split": args.split}
    pretrained_ckpt, random_ckpt = out / "encoder.pt", out / "encoder_random.pt"

    def log(done: int, total: int, info: dict) -> None:
        parts = " ".join(f"{k}={info[k]:.3f}" for k in ("mem", "qt", "next") if info.get(k))
        print(f"  pretrain step {done}/{total} {parts}", flush=True)

    overrides = {"pit": args.pit, "num_regression": not args.no_num_regression}
    t = time.perf_counter()
    if not (args.reuse and pretrained_ckpt.exists()):
        pretrain_for_dataset(
            args.data,
            pretrained_ckpt,
            progress=log,
            seed=args.seed,
            model_overrides=overrides,
            pretrain_config=PretrainConfig(minutes=args.minutes, clock=args.clock, seed=args.seed),
        )
    if not (args.reuse and random_ckpt.exists()):
        random_checkpoint_for_dataset(
            args.data, random_ckpt, seed=args.seed, model_overrides=overrides
        )
    history = checkpoint.load_raw(pretrained_ckpt)["history"]
    report["pretraining"] = {
        k: history.get(k)
        for k in (
            "steps",
            "stop_reason",
            "train_s",
            "clock",
            "n_events",
            "data_steps",
            "eval_initial",
            "eval_final",
        )
    }
    report["pretraining"]["wall_s"] = round(time.perf_counter() - t, 1)
    print("pretraining:", report["pretraining"], flush=True)

    report["embedding"] = {}
    for name, ckpt in (("pretrained", pretrained_ckpt), ("random_init", random_ckpt)):
        report["embedding"][name] = embed_in_child(ckpt, args.data, out / f"emb_{name}.npy")
        print("embedding", name, report["embedding"][name], flush=True)
    emb = np.load(out / "emb_pretrained.npy", mmap_mode="r")
    emb_random = np.load(out / "emb_random_init.npy", mmap_mode="r")

    cases = read_table(args.data, "cases")
    hand, y, test = hand_labels_split(cases, read_schema(args.data), args.split)
    train = ~test
    report["rows"] = {
        "pool": int(train.sum()),
        "test": int(test.sum()),
        "pool_positives": int(y[train].sum()),
        "test_positives": int(y[test].sum()),
    }
    report["hand_features"] = hand
    results: dict = {}
    print("probe ...", flush=True)
    for name, matrix in (("pretrained", emb), ("random_init", emb_random)):
        results[f"probe_{name}"] = probe(
            matrix[train],
            y[train],
            matrix[test],
            y[test],
            max_train=args.probe_train,
            seed=args.seed,
        )
        print(name, results[f"probe_{name}"], flush=True)
    hand_x = cases[hand].to_numpy(np.float32)
    print("lightgbm ...", flush=True)
    results["gbrt_hand"] = gbrt(hand_x[train], y[train], hand_x[test], y[test], seed=args.seed)
    print("hand", results["gbrt_hand"], flush=True)
    both = np.hstack([hand_x, np.asarray(emb)])
    results["gbrt_hand_plus_embeddings"] = gbrt(
        both[train], y[train], both[test], y[test], seed=args.seed
    )
    print("hand+emb", results["gbrt_hand_plus_embeddings"], flush=True)
    del both
    report["results"] = results
    report["lift"] = {
        "probe_pretrained_minus_random": _diff(
            results["probe_pretrained"], results["probe_random_init"]
        ),
        "gbrt_plus_embeddings_minus_hand": _diff(
            results["gbrt_hand_plus_embeddings"], results["gbrt_hand"]
        ),
    }
    rng = np.random.default_rng(args.seed)
    test_rows = np.flatnonzero(test)
    sample = np.sort(
        np.concatenate(
            [
                rng.choice(test_rows[y[test_rows] == 0], size=4000, replace=False),
                test_rows[y[test_rows] == 1][:1000],
            ]
        )
    )
    embedding_map_png(
        np.asarray(emb[sample]),
        out / "embedding_map.png",
        colors=y[sample],
        labels=["not fraud", "fraud"],
        sample=len(sample),
        seed=args.seed,
    )
    (out / "quality.json").write_text(json.dumps(report, indent=2))
    (out / "quality.md").write_text(markdown(report))
    print(markdown(report))
    return report


def _diff(a: dict, b: dict) -> dict:
    return {k: round(a[k] - b[k], 4) for k in a}


def markdown(report: dict) -> str:
    r = report["results"]
    rows = [
        ("Logistic probe, pretrained embeddings", r["probe_pretrained"]),
        ("Logistic probe, random-init embeddings", r["probe_random_init"]),
        ("LightGBM, hand features", r["gbrt_hand"]),
        ("LightGBM, hand features + embeddings", r["gbrt_hand_plus_embeddings"]),
    ]
    lines = [
        "| Model (test: July) | ROC AUC | PR-AUC | Recall at precision 0.8 |",
        "|---|---|---|---|",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | {m['recall_at_p80']:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

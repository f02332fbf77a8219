"""Which of the encoder's columns carry its offline gain, beside the entity-deviation features.

Reads an encoder quality run's vectors (``emb_pretrained.npy``, one row per case) and, for the
count of own-event columns, its ``encoder.pt``; fits LightGBM as the quality run does (pool =
cases before ``--split``, test = from it on, every true label) on the hand features with and
without the deviation features ("this value against the entity's own earlier mean", from
:func:`learning.features.entity_deviation_features`), each alone and with the own-event columns
or the whole vector. Writes ``columns.json`` and ``columns.md`` into the run folder.

    python -m encoders.bench.columns --data ../shared/data/fraud_handbook --run bench-out/q-reg-s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from encoders.bench.quality import gbrt, hand_labels_split


def column_sets(
    hand: np.ndarray, deviation: np.ndarray, embeddings: np.ndarray, n_own: int
) -> dict[str, np.ndarray]:
    """The compared matrices, by name (own-event columns = the vector's last ``n_own``)."""
    own = embeddings[:, embeddings.shape[1] - n_own :]
    return {
        "hand": hand,
        "hand + deviation": np.hstack([hand, deviation]),
        "hand + own-event columns": np.hstack([hand, own]),
        "hand + deviation + own-event columns": np.hstack([hand, deviation, own]),
        "hand + the whole vector": np.hstack([hand, embeddings]),
        "hand + deviation + the whole vector": np.hstack([hand, deviation, embeddings]),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/fraud_handbook"))
    parser.add_argument("--run", type=Path, required=True, help="an encoder quality run's --out")
    parser.add_argument("--split", default="2018-07-01", help="test = cases from this day on")
    parser.add_argument(
        "--own-event-columns",
        type=int,
        default=None,
        help="how many of the vector's last columns are the own-event ones (default: from the "
        "run's encoder.pt)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from encoders import checkpoint
    from encoders.api import read_schema, read_table
    from learning.features import entity_deviation_features

    n_own = args.own_event_columns
    if n_own is None:
        n_own = checkpoint.own_event_columns(checkpoint.load_raw(args.run / "encoder.pt")["config"])
    embeddings = np.load(args.run / "emb_pretrained.npy")
    if not 0 < n_own <= embeddings.shape[1]:
        parser.error(f"{n_own} own-event columns of a {embeddings.shape[1]}-column vector")
    cases = read_table(args.data, "cases")
    schema = read_schema(args.data)
    hand_columns, y, test = hand_labels_split(cases, schema, args.split)
    numeric = [c for c in schema.get("cases", {}).get("numeric", []) if c in cases.columns]
    hand = cases[hand_columns].to_numpy(np.float32)
    deviation = entity_deviation_features(cases, numeric).to_numpy(np.float32)
    train = ~test
    results = {}
    for name, X in column_sets(hand, deviation, embeddings, n_own).items():
        results[name] = gbrt(X[train], y[train], X[test], y[test], seed=args.seed)
        print(name, results[name], flush=True)
    report = {
        "data": str(args.data),
        "run": str(args.run),
        "split": args.split,
        "own_event_columns": n_own,
        "vector_columns": int(embeddings.shape[1]),
        "results": results,
    }
    (args.run / "columns.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| columns (LightGBM, every true label) | ROC AUC | PR-AUC | recall at precision 0.8 |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | {r['recall_at_p80']:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    (args.run / "columns.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()

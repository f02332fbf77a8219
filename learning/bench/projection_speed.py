"""Time the case map's computation: the stratified sample and UMAP on N cases of D dimensions.

Run in a fresh process (UMAP's numba functions compile on their first call in each process)::

    python -m learning.bench.projection_speed --cases 5000 --dim 64

Prints the load average, then the seconds of the import, the sample, the first projection
(compile included) and a second one (what a worker that already drew a map spends).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000, help="Points on the map.")
    parser.add_argument("--pool", type=int, default=1_000_000, help="Cases sampled from.")
    parser.add_argument("--dim", type=int, default=64, help="Dimensions of the vectors.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    started = time.perf_counter()
    import umap  # noqa: F401  (numba, pynndescent: the import is part of a first map's cost)

    from learning.projection import project_2d, standardize, stratified_sample

    print(f"import umap: {time.perf_counter() - started:.1f}s")
    rng = np.random.default_rng(args.seed)
    states = rng.choice(
        np.array(["U", "P", "confirmed", "not_confirmed"]),
        size=args.pool,
        p=[0.99, 0.008, 0.001, 0.001],
    )
    in_batch = np.zeros(args.pool, dtype=bool)
    in_batch[rng.choice(args.pool, 100, replace=False)] = True
    clock = time.perf_counter()
    rows = stratified_sample(states, in_batch, args.cases, random_state=args.seed)
    print(f"sample {len(rows):,} of {args.pool:,}: {time.perf_counter() - clock:.2f}s")
    centres = rng.normal(scale=4.0, size=(8, args.dim))
    X = standardize(centres[rng.integers(0, 8, len(rows))] + rng.normal(size=(len(rows), args.dim)))
    for attempt in ("first (numba compiles)", "second"):
        clock = time.perf_counter()
        projection = project_2d(X, random_state=args.seed)
        print(f"{projection.method} {attempt}: {time.perf_counter() - clock:.1f}s")


if __name__ == "__main__":
    main()

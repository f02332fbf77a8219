"""Speed and memory of the Auto Risk encoder stack against torch.nn.TransformerEncoder.

Each (length, model, mode) runs in a fresh subprocess so its peak resident memory is its own.
Models, all of width D, depth and heads equal:

- ``autorisk``: the encoder's blocks (gated depthwise-separable conv + sliding-window attention);
- ``transformer``: ``nn.TransformerEncoder`` with PyTorch's fused attention (flash kernel);
- ``transformer_math``: the same with the math attention backend, which materializes the N x N
  scores (what the seed's comparison was made against).

Throughput is measured on the process's CPU time (``seq_per_s``; with one thread that is the wall
time an idle core takes, and it stays fair on a busy shared machine) and on wall time
(``seq_per_s_wall``). Inputs are random (B, N, D) tensors (the field embedding and heads are the
same for every model and excluded). ``mode`` is ``train`` (forward + backward + AdamW step) or
``inference`` (forward under ``torch.inference_mode``). Batches hold about ``TOKENS_PER_BATCH``
positions.

    python manage.py benchmark_speed --part encoder --out DIR [--quick]
    python -m encoders.bench.speed --out DIR [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

D_MODEL, N_HEADS, DEPTH, KERNEL, WINDOW = 128, 4, 3, 5, 64
TOKENS_PER_BATCH = 8192
LENGTHS = [256, 1000, 2000, 4000]
QUICK_LENGTHS = [1000, 4000]
MODELS = ["autorisk", "transformer", "transformer_math"]


def build(model_name: str):
    import torch
    from torch import nn

    from encoders.model import AutoRiskConfig, Block

    if model_name == "autorisk":
        config = AutoRiskConfig(
            d_model=D_MODEL,
            n_heads=N_HEADS,
            n_blocks=DEPTH,
            kernel_size=KERNEL,
            window=WINDOW,
            pool_window=1,
            max_len=10**6,
        )
        return nn.Sequential(*[Block(config) for _ in range(DEPTH)], nn.LayerNorm(D_MODEL))
    layer = nn.TransformerEncoderLayer(
        D_MODEL,
        N_HEADS,
        dim_feedforward=4 * D_MODEL,
        dropout=0.0,
        batch_first=True,
        norm_first=True,
    )
    torch.manual_seed(0)
    return nn.TransformerEncoder(layer, DEPTH, enable_nested_tensor=False)


def child(length: int, model_name: str, mode: str, seconds: float) -> dict:
    """Measure one configuration in this (fresh) process."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from encoders import threads
    from encoders.bench.memory import peak_rss_mb

    n_threads = threads.configure()
    torch.manual_seed(0)
    model = build(model_name)
    batch = max(1, TOKENS_PER_BATCH // length)
    x = torch.randn(batch, length, D_MODEL)
    context = contextlib.nullcontext()
    if model_name == "transformer_math":
        torch.backends.mha.set_fastpath_enabled(False)
        context = sdpa_kernel(SDPBackend.MATH)
    baseline_mb = peak_rss_mb()
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            optimizer.step()
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                model(x)

    with context:
        step()  # warm-up (allocations, kernel choice)
        done, started, cpu_started = 0, time.perf_counter(), time.process_time()
        while done < 2 or (time.process_time() - cpu_started < seconds and done < 50):
            step()
            done += 1
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    return {
        "length": length,
        "model": model_name,
        "mode": mode,
        # CPU seconds of this process: with one thread, the wall time an idle core would take
        "seq_per_s": round(done * batch / cpu, 3),
        "seq_per_s_wall": round(done * batch / elapsed, 3),
        "peak_mem_mb": round(peak_rss_mb(), 1),
        "baseline_mem_mb": round(baseline_mb, 1),
        "batch": batch,
        "steps": done,
        "threads": n_threads,
    }


def run_config(length: int, model_name: str, mode: str, seconds: float) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "encoders.bench.speed",
        "--child",
        "--length",
        str(length),
        "--model",
        model_name,
        "--mode",
        mode,
        "--seconds",
        str(seconds),
    ]
    repo_root = Path(__file__).resolve().parent.parent
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root)
    if result.returncode != 0:
        return {
            "length": length,
            "model": model_name,
            "mode": mode,
            "seq_per_s": None,
            "peak_mem_mb": None,
            "error": result.stderr.strip().splitlines()[-1:],
        }
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(out_dir: Path, quick: bool) -> dict:
    """Run every configuration, write ``out_dir/speed_encoder.json``, return the report."""
    from encoders.model import gated_conv_parameter_counts

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = QUICK_LENGTHS if quick else LENGTHS
    modes = ["inference"] if quick else ["train", "inference"]
    seconds = 1.0 if quick else 3.0
    results = []
    started = time.perf_counter()
    for mode in modes:
        for length in lengths:
            for model_name in MODELS:
                row = run_config(length, model_name, mode, seconds)
                results.append(row)
                print(
                    f"{mode:9s} N={length:5d} {model_name:16s} "
                    f"{row['seq_per_s']!s:>10s} seq/s  peak {row['peak_mem_mb']!s:>8s} MB",
                    flush=True,
                )
    report = {
        "results": results,
        "conv_parameters": gated_conv_parameter_counts(256, 5),
        "goals_at_4000": _goals(results),
        "settings": {
            "d_model": D_MODEL,
            "heads": N_HEADS,
            "depth": DEPTH,
            "kernel_size": KERNEL,
            "window": WINDOW,
            "tokens_per_batch": TOKENS_PER_BATCH,
            "quick": quick,
            "threads_env": os.environ.get("ENCODERS_THREADS", "1"),
            "cpu_count": os.cpu_count(),
            "machine": platform.platform(),
            "load_average_at_end": list(os.getloadavg()),
            "gpu": None,
            "wall_s": round(time.perf_counter() - started, 1),
        },
    }
    (out_dir / "speed_encoder.json").write_text(json.dumps(report, indent=2))
    return report


def _goals(results: list[dict]) -> dict:
    """Throughput ratio vs the fused Transformer, memory ratio vs the materialized one, at 4000."""
    goals = {}
    for mode in ("train", "inference"):
        row = {r["model"]: r for r in results if r["length"] == 4000 and r["mode"] == mode}
        if len(row) < 3 or any(r.get("seq_per_s") is None for r in row.values()):
            continue
        goals[mode] = {
            "speedup_vs_transformer": round(
                row["autorisk"]["seq_per_s"] / row["transformer"]["seq_per_s"], 2
            ),
            "memory_fraction_of_transformer_math": round(
                row["autorisk"]["peak_mem_mb"] / row["transformer_math"]["peak_mem_mb"], 3
            ),
        }
    return goals


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--length", type=int)
    parser.add_argument("--model", choices=MODELS)
    parser.add_argument("--mode", choices=["train", "inference"])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.length, args.model, args.mode, args.seconds)))
    else:
        main(args.out, args.quick)

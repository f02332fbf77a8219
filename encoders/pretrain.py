"""Self-supervised pretraining with the seed's two agent tasks.

- Masked event modeling: hide every field value of ``mask_frac`` of the events (their timing
  stays) and predict them from context: categorical fields by classification, numeric fields by
  classifying their quantile bucket.
- Quick Thought: cut each window into two consecutive sub-sequences A and B, encode both with the
  same encoder, and tell which (A, B) pairs of the batch come from the same window (a
  batch-softmax over cosine similarities, both directions).

The loss is ``mem_weight * mem + qt_weight * qt``; training stops on a time budget, a step budget,
or when the smoothed loss stops improving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from encoders.batches import make_batch
from encoders.featurize import EntitySequences
from encoders.model import AutoRiskEncoder

Progress = Callable[[int, int, dict], None]


@dataclass
class PretrainConfig:
    seq_len: int = 128
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    mask_frac: float = 0.15
    mem_weight: float = 1.0
    qt_weight: float = 1.0
    qt_temperature: float = 0.1
    minutes: float = 5.0
    clock: str = "wall"  # "wall", or "process": CPU time of this process (busy shared machines)
    max_steps: int | None = None
    min_steps: int = 100
    patience: int = 150  # steps without a tol-relative improvement of the smoothed loss
    tol: float = 2e-3
    log_every: int = 10
    eval_size: int = 256
    seed: int = 0


def sample_pairs(
    seqs: EntitySequences, batch_size: int, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random windows cut into two consecutive halves.

    Returns
    -------
    first, second : (batch_size, seq_len) int64 right-padded event rows of sub-sequences A and B.
    """
    lengths = seqs.lengths
    eligible = np.flatnonzero(lengths >= 2)
    if len(eligible) == 0:
        raise ValueError("pretraining needs at least one entity with two or more events")
    weights = lengths[eligible] / lengths[eligible].sum()
    ents = rng.choice(eligible, size=batch_size, p=weights)
    n = lengths[ents]
    end = (rng.random(batch_size) * (n - 1)).astype(np.int64) + 2  # in 2..n
    start = np.maximum(0, end - seq_len)
    width = end - start
    lo = np.maximum(1, width // 4)
    hi = np.maximum(lo, (3 * width) // 4)
    split = lo + (rng.random(batch_size) * (hi - lo + 1)).astype(np.int64)
    base = seqs.offsets[ents] + start
    offsets = np.arange(seq_len)[None, :]
    first = np.where(offsets < split[:, None], base[:, None] + offsets, -1)
    second = np.where(
        offsets < (width - split)[:, None], base[:, None] + split[:, None] + offsets, -1
    )
    return first, second


def pair_losses(
    model: AutoRiskEncoder,
    seqs: EntitySequences,
    first: np.ndarray,
    second: np.ndarray,
    config: PretrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-event loss and Quick-Thought loss of one batch of (A, B) pairs."""
    B = first.shape[0]
    index = np.concatenate([first, second])
    index = index[:, : max(1, int((index >= 0).sum(1).max()))]  # drop all-padding columns
    batch = make_batch(seqs.features, index)  # (2B, T)
    mask = batch["mask"]
    event_mask = (torch.rand(mask.shape, generator=generator) < config.mask_frac) & mask
    # A is read with its true gap to B's first event; B's reading point has no successor
    gap_to_b = batch["time_num"][B:, 0, 0]
    case_gap = torch.cat([gap_to_b, torch.zeros(B)])
    targets = {"cat": batch["cat"], "num_bucket": batch["num_bucket"]}
    out, mem = model(batch, case_gap=case_gap, event_mask=event_mask, targets=targets)
    u = F.normalize(out[:B], dim=-1)
    v = F.normalize(out[B:], dim=-1)
    logits = u @ v.T / config.qt_temperature  # (B, B): row i's match is column i
    labels = torch.arange(B)
    qt = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return mem, qt


def evaluate(model, seqs, pairs, config: PretrainConfig) -> dict[str, float]:
    """Both losses on fixed pairs with a fixed mask (comparable across training)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        mem, qt = pair_losses(model, seqs, *pairs, config, torch.Generator().manual_seed(1234))
    model.train(was_training)
    return {"mem": mem.item(), "qt": qt.item()}


def pretrain(
    model: AutoRiskEncoder,
    seqs: EntitySequences,
    config: PretrainConfig | None = None,
    *,
    progress: Progress | None = None,
) -> dict:
    """Train ``model`` in place; returns the history (losses per logged step, eval before/after).

    ``progress(done, total, info)`` is called every ``log_every`` steps; with a time budget,
    ``total`` is the number of steps expected to fit in it at the current pace.
    """
    config = config or PretrainConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    eval_pairs = sample_pairs(seqs, config.eval_size, config.seq_len, np.random.default_rng(10_000))
    history: dict = {
        "config": asdict(config),
        "step": [],
        "mem": [],
        "qt": [],
        "loss": [],
        "elapsed_s": [],
        "eval_initial": evaluate(model, seqs, eval_pairs, config),
    }
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    budget_s = config.minutes * 60.0
    clock = time.process_time if config.clock == "process" else time.perf_counter
    started = clock()
    smoothed, best, best_step = None, float("inf"), 0
    stop_reason = "max_steps"
    step = 0
    model.train()
    while config.max_steps is None or step < config.max_steps:
        lr_scale = min(1.0, (step + 1) / max(1, config.warmup_steps))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_scale
        first, second = sample_pairs(seqs, config.batch_size, config.seq_len, rng)
        mem, qt = pair_losses(model, seqs, first, second, config, generator)
        loss = config.mem_weight * mem + config.qt_weight * qt
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        value = loss.item()
        smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
        if smoothed < best * (1 - config.tol):
            best, best_step = smoothed, step
        elapsed = clock() - started
        if step % config.log_every == 0 or step == 1:
            history["step"].append(step)
            history["mem"].append(mem.item())
            history["qt"].append(qt.item())
            history["loss"].append(value)
            history["elapsed_s"].append(round(elapsed, 2))
            if progress is not None:
                total = config.max_steps or max(step, int(budget_s / (elapsed / step)))
                progress(step, total, {"mem": mem.item(), "qt": qt.item(), "elapsed_s": elapsed})
        if elapsed >= budget_s:
            stop_reason = "time_budget"
            break
        if step >= config.min_steps and step - best_step >= config.patience:
            stop_reason = "converged"
            break
    model.eval()
    history["steps"] = step
    history["stop_reason"] = stop_reason
    history["train_s"] = round(clock() - started, 2)
    history["clock"] = config.clock
    history["eval_final"] = evaluate(model, seqs, eval_pairs, config)
    return history

"""Self-supervised pretraining with the seed's two agent tasks.

- Masked event modeling: hide every field value of ``mask_frac`` of the events (their timing
  stays) and predict them from context: categorical fields by classification, numeric fields by
  classifying their quantile bucket.
- Quick Thought: cut each window into two consecutive sub-sequences A and B, encode both with the
  same encoder, and tell which (A, B) pairs of the batch come from the same window (a
  batch-softmax over cosine similarities, both directions).

- Next event: predict each event's fields from the state just before it and its own timing (the
  head whose surprise at a case's own event joins the case's vector).

The loss is ``mem_weight * mem + qt_weight * qt + next_weight * next``. The budget is sized to the
data: ``epochs`` passes over the events (at least ``min_steps`` steps), capped by ``minutes``
and ``max_steps``; training stops earlier when the held-out loss (fixed pairs, evaluated every
``eval_every`` steps) has not improved for ``patience`` steps.
"""

from __future__ import annotations

import math
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
    next_weight: float = 1.0
    epochs: float | None = 4.0  # passes over the events; None: no data-sized step budget
    minutes: float = 5.0
    clock: str = "wall"  # "wall", or "process": CPU time of this process (busy shared machines)
    max_steps: int | None = None
    min_steps: int = 100
    patience: int = 150  # steps without a tol-relative improvement of the held-out loss
    tol: float = 2e-3
    log_every: int = 10
    eval_every: int = 25
    eval_size: int = 256
    seed: int = 0

    def data_steps(self, n_events: int) -> int | None:
        """The step budget ``epochs`` passes over ``n_events`` events take (at least
        ``min_steps``); None without ``epochs``."""
        if self.epochs is None:
            return None
        per_step = self.batch_size * self.seq_len
        return max(self.min_steps, math.ceil(self.epochs * n_events / per_step))


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
) -> dict[str, torch.Tensor]:
    """Masked-event, Quick-Thought and (with the head) next-event losses of one batch of (A, B)
    pairs."""
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
    out, h = model.encode(batch, case_gap=case_gap, event_mask=event_mask)
    losses = {"mem": model.masked_event_loss(h, targets, event_mask & mask)}
    u = F.normalize(out[:B], dim=-1)
    v = F.normalize(out[B:], dim=-1)
    logits = u @ v.T / config.qt_temperature  # (B, B): row i's match is column i
    labels = torch.arange(B)
    losses["qt"] = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    if model.config.next_event:
        # a random share of positions, like the masked events: the heads are the costly part
        where = torch.rand(mask.shape, generator=generator) < config.mask_frac
        losses["next"] = model.next_event_loss(h, batch, where)
    return losses


def total_loss(losses: dict[str, torch.Tensor], config: PretrainConfig) -> torch.Tensor:
    weights = {"mem": config.mem_weight, "qt": config.qt_weight, "next": config.next_weight}
    return sum(weights[name] * value for name, value in losses.items())


def evaluate(model, seqs, pairs, config: PretrainConfig) -> dict[str, float]:
    """Every loss and their weighted total on fixed pairs with a fixed mask (comparable across
    training)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        losses = pair_losses(model, seqs, *pairs, config, torch.Generator().manual_seed(1234))
    model.train(was_training)
    out = {name: value.item() for name, value in losses.items()}
    out["total"] = total_loss(losses, config).item()
    return out


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
    initial = evaluate(model, seqs, eval_pairs, config)
    history: dict = {
        "config": asdict(config),
        "step": [],
        "mem": [],
        "qt": [],
        "next": [],
        "loss": [],
        "elapsed_s": [],
        "eval_initial": initial,
        "heldout": [{"step": 0, **initial}],
    }
    n_events = len(seqs.features)
    data_steps = config.data_steps(n_events)
    history["n_events"] = n_events
    history["data_steps"] = data_steps
    limits = [
        (n, reason)
        for n, reason in ((config.max_steps, "max_steps"), (data_steps, "data_budget"))
        if n is not None
    ]
    step_limit, limit_reason = min(limits) if limits else (None, "max_steps")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    budget_s = config.minutes * 60.0
    clock = time.process_time if config.clock == "process" else time.perf_counter
    started = clock()
    best, best_step = initial["total"], 0
    stop_reason = limit_reason
    step = 0
    model.train()
    while step_limit is None or step < step_limit:
        lr_scale = min(1.0, (step + 1) / max(1, config.warmup_steps))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_scale
        first, second = sample_pairs(seqs, config.batch_size, config.seq_len, rng)
        losses = pair_losses(model, seqs, first, second, config, generator)
        loss = total_loss(losses, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        value = loss.item()
        if step % config.eval_every == 0:
            heldout = evaluate(model, seqs, eval_pairs, config)
            history["heldout"].append({"step": step, **heldout})
            if heldout["total"] < best * (1 - config.tol):
                best, best_step = heldout["total"], step
        elapsed = clock() - started
        if step % config.log_every == 0 or step == 1:
            parts = {name: v.item() for name, v in losses.items()}
            history["step"].append(step)
            for name in ("mem", "qt", "next"):
                history[name].append(parts.get(name))
            history["loss"].append(value)
            history["elapsed_s"].append(round(elapsed, 2))
            if progress is not None:
                by_time = max(step, int(budget_s / (elapsed / step))) if elapsed > 0 else step
                total = min(step_limit, by_time) if step_limit else by_time
                progress(step, total, {**parts, "elapsed_s": elapsed})
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

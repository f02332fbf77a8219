"""Fast batch embedding: encode each entity's history once, read every case off it.

The encoder only looks left with a bounded receptive field, so the state at an entity's event t
is the same whether the model saw the case's last ``max_len`` events or the whole history; a
case's vector is read at its last event strictly before its ``ts`` (:func:`case_positions`).
Histories longer than ``segment_len`` are cut into overlapping segments (overlap = the context a
pooled state needs), which keeps the result exact.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encoders.batches import make_batch
from encoders.featurize import EntitySequences
from encoders.model import AutoRiskEncoder

Progress = Callable[[int, int, dict], None]


@dataclass
class Segment:
    start: int  # first sorted-event row encoded
    length: int  # rows encoded
    read_from: int  # first row whose state is exact (earlier rows are context only)


def plan_segments(seqs: EntitySequences, entities: np.ndarray, segment_len: int, context: int):
    """Segments covering ``entities``' events; each row is read from exactly one segment."""
    segments: list[Segment] = []
    stride = segment_len - context
    for e in entities:
        lo, hi = int(seqs.offsets[e]), int(seqs.offsets[e + 1])
        if hi - lo <= segment_len:
            segments.append(Segment(lo, hi - lo, lo))
            continue
        s = lo
        while True:
            end = min(s + segment_len, hi)
            segments.append(Segment(s, end - s, lo if s == lo else s + context))
            if end == hi:
                break
            s += stride
    return segments


def _states_for_segments(model: AutoRiskEncoder, seqs: EntitySequences, segments: list[Segment]):
    """Pooling states (n_rows, 2D) for the rows each segment reads, those rows' next-event
    surprise (n_rows, n_surprise; None without the head), and the rows."""
    T = max(s.length for s in segments)
    index = np.full((len(segments), T), -1, dtype=np.int64)
    for i, s in enumerate(segments):
        index[i, : s.length] = np.arange(s.start, s.start + s.length)
    batch = make_batch(seqs.features, index)
    h = model.hidden(batch)  # (b, T, D)
    states = model.states(h, batch["mask"])  # (b, T, 2D)
    seg_idx = np.concatenate(
        [np.full(s.start + s.length - s.read_from, i) for i, s in enumerate(segments)]
    )
    offs = np.concatenate([np.arange(s.read_from - s.start, s.length) for s in segments])
    rows = np.concatenate([np.arange(s.read_from, s.start + s.length) for s in segments])
    at = (torch.from_numpy(seg_idx), torch.from_numpy(offs))
    surprise = model.next_event_surprise(h, batch, at) if model.config.next_event else None
    return states[at], surprise, rows


def chunk_plan(seqs: EntitySequences, chunk_events: int) -> list[np.ndarray]:
    """Entities grouped into chunks of about ``chunk_events`` events (deterministic)."""
    lengths = seqs.lengths
    order = np.argsort(-lengths, kind="stable")
    chunks, current, size = [], [], 0
    for e in order:
        current.append(e)
        size += int(lengths[e])
        if size >= chunk_events:
            chunks.append(np.array(current, dtype=np.int64))
            current, size = [], 0
    if current:
        chunks.append(np.array(current, dtype=np.int64))
    return chunks


@torch.no_grad()
def embed_cases(
    model: AutoRiskEncoder,
    seqs: EntitySequences,
    entity_index: np.ndarray,
    position: np.ndarray,
    case_gap: np.ndarray,
    out: np.ndarray,
    *,
    progress_path: Path | None = None,
    fingerprint: str = "",
    chunk_events: int = 200_000,
    batch_tokens: int = 32_768,
    segment_len: int = 4096,
    progress: Progress | None = None,
    claim: Callable[[str], bool] | None = None,
) -> np.ndarray:
    """Write one vector per case into ``out`` (n_cases, embedding_dim); resumable by chunk.

    Parameters
    ----------
    entity_index, position, case_gap : (n_cases,) from :func:`case_positions`.
    out : (n_cases, embedding_dim) float32 array, typically a ``.npy`` memmap.
    progress_path : JSON sidecar listing finished chunks; chunks listed there are skipped.
    claim : called with a chunk's key (``"empty"``, ``"chunk<c>"``) before it is embedded; a
        chunk whose claim returns False is left to whoever claimed it. Several processes can so
        share one job and one memmap: every chunk writes its own rows, and the sidecar is merged
        under a file lock.
    """
    model.eval()
    cfg = model.config
    context = cfg.pool_window + cfg.receptive_field - 1
    segment_len = max(segment_len, 2 * context)
    n_cases = len(position)
    chunks = chunk_plan(seqs, chunk_events)
    done = read_done(progress_path, fingerprint, n_cases)
    # cases grouped by entity
    by_entity = np.argsort(entity_index, kind="stable")
    ent_sorted = entity_index[by_entity]
    written = 0
    empty_cases = np.flatnonzero(position < 0)
    if "empty" not in done and (claim is None or claim("empty")):
        if len(empty_cases):
            dim = 2 * cfg.d_model
            vec = model.pool(torch.zeros(1, dim), torch.zeros(1), torch.ones(1, dtype=torch.bool))
            if cfg.next_event:  # no event of its own to be surprised by
                vec = torch.cat([vec, torch.zeros(1, cfg.n_surprise)], dim=-1)
            out[empty_cases] = vec.numpy()
        done.add("empty")
        _write_done(progress_path, fingerprint, n_cases, done)
    written += len(empty_cases)
    for c, entities in enumerate(chunks):
        lo = np.searchsorted(ent_sorted, entities, side="left")
        hi = np.searchsorted(ent_sorted, entities, side="right")
        case_rows = np.concatenate([by_entity[a:b] for a, b in zip(lo, hi, strict=True)])
        case_rows = case_rows[position[case_rows] >= 0]
        key = f"chunk{c}"
        if key in done:
            written += len(case_rows)
            continue
        if claim is not None and not claim(key):
            continue
        # map each case to its event row; states are computed per model batch of segments
        segments = plan_segments(seqs, entities, segment_len, context)
        row_to_case_order = np.argsort(position[case_rows], kind="stable")
        cases_by_row = case_rows[row_to_case_order]
        rows_sorted = position[cases_by_row]
        for group in _token_groups(segments, batch_tokens):
            states, surprise, rows = _states_for_segments(model, seqs, group)
            a = np.searchsorted(rows_sorted, rows.min(), side="left")
            b = np.searchsorted(rows_sorted, rows.max(), side="right")
            want = cases_by_row[a:b]
            want_rows = position[want]
            row_order = np.argsort(rows, kind="stable")
            found = np.searchsorted(rows[row_order], want_rows).clip(max=len(rows) - 1)
            at = row_order[found]
            keep = rows[at] == want_rows  # rows of this group only (groups may interleave)
            want, at = want[keep], at[keep]
            gap = torch.from_numpy(case_gap[want].astype(np.float32))
            not_empty = torch.zeros(len(want), dtype=torch.bool)
            vec = model.pool(states[torch.from_numpy(at)], gap, not_empty)
            if surprise is not None:
                own = model.own_event_surprise(surprise[torch.from_numpy(at)], gap, not_empty)
                vec = torch.cat([vec, own], dim=-1)
            out[want] = vec.numpy()
            written += len(want)
            if progress is not None:
                progress(written, n_cases, {"chunk": c, "chunks": len(chunks)})
        if hasattr(out, "flush"):
            out.flush()
        done.add(key)
        _write_done(progress_path, fingerprint, n_cases, done)
    if progress is not None:
        progress(n_cases, n_cases, {"chunk": len(chunks), "chunks": len(chunks)})
    return out


def _token_groups(segments: list[Segment], batch_tokens: int):
    """Segments, longest first, packed into batches of about ``batch_tokens`` padded tokens."""
    order = sorted(range(len(segments)), key=lambda i: -segments[i].length)
    group: list[Segment] = []
    for i in order:
        seg = segments[i]
        longest = group[0].length if group else seg.length
        if group and longest * (len(group) + 1) > batch_tokens:
            yield group
            group = []
        group.append(seg)
    if group:
        yield group


def chunk_keys(n_chunks: int) -> list[str]:
    """Every unit of an embedding job: the cases without history, then each entity chunk."""
    return ["empty"] + [f"chunk{c}" for c in range(n_chunks)]


def is_complete(progress_path: Path, fingerprint: str, n_cases: int, n_chunks: int) -> bool:
    done = read_done(progress_path, fingerprint, n_cases)
    return all(key in done for key in chunk_keys(n_chunks))


def read_done(path: Path | None, fingerprint: str, n_cases: int) -> set[str]:
    if path is None or not Path(path).exists():
        return set()
    state = json.loads(Path(path).read_text())
    if state.get("fingerprint") != fingerprint or state.get("n_cases") != n_cases:
        return set()
    return set(state.get("done", []))


def _write_done(path: Path | None, fingerprint: str, n_cases: int, done: set[str]) -> None:
    """Record ``done`` plus whatever other processes recorded meanwhile (read-merge-write)."""
    if path is None:
        return
    with open(Path(str(path) + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done |= read_done(path, fingerprint, n_cases)
        tmp = Path(f"{path}.{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps({"fingerprint": fingerprint, "n_cases": n_cases, "done": sorted(done)})
        )
        tmp.replace(path)


@torch.no_grad()
def embed_cases_windowed(
    model: AutoRiskEncoder,
    seqs: EntitySequences,
    position: np.ndarray,
    case_gap: np.ndarray,
    *,
    batch_size: int = 256,
) -> np.ndarray:
    """Reference path: encode each case's own last ``max_len`` events. (n_cases, embedding_dim).

    Slow (every case re-encodes an overlapping window); :func:`embed_cases` must agree with it.
    """
    from encoders.batches import case_windows

    model.eval()
    out = np.zeros((len(position), model.config.embedding_dim), dtype=np.float32)
    for a in range(0, len(position), batch_size):
        index = case_windows(seqs, position[a : a + batch_size], model.config.max_len)
        batch = make_batch(seqs.features, index)
        gap = torch.from_numpy(case_gap[a : a + batch_size])
        out[a : a + batch_size] = model.case_vectors(batch, case_gap=gap).numpy()
    return out

"""Padded batches of event windows: index arrays into sorted events -> dict of tensors."""

from __future__ import annotations

import numpy as np
import torch

from encoders.featurize import EntitySequences, EventFeatures


def make_batch(features: EventFeatures, index: np.ndarray) -> dict[str, torch.Tensor]:
    """Gather events into a right-padded batch.

    Parameters
    ----------
    features : EventFeatures of the sorted events.
    index : (B, T) int64 rows of ``features``; -1 marks padding (only at the right end).

    Returns
    -------
    dict with ``cat`` (B, T, C), ``num`` (B, T, M), ``num_bucket`` (B, T, M), ``time_num``
    (B, T, 2), ``hour`` (B, T), ``weekday`` (B, T), ``text`` (B, T, X, G), ``mask`` (B, T) bool.
    """
    taken = features.take(index)
    batch = {name: torch.from_numpy(np.ascontiguousarray(arr)) for name, arr in vars(taken).items()}
    batch["mask"] = torch.from_numpy(index >= 0)
    return batch


def case_windows(seqs: EntitySequences, position: np.ndarray, max_len: int) -> np.ndarray:
    """(n, max_len) right-padded indices of each case's last ``max_len`` events up to ``position``.

    ``position`` (n,) is the row of the case's last event (-1: empty sequence), as returned by
    :func:`encoders.featurize.case_positions`.
    """
    position = np.asarray(position, dtype=np.int64)
    ent_of_event = np.repeat(np.arange(len(seqs.entity_ids)), seqs.lengths)
    start = np.where(position >= 0, seqs.offsets[ent_of_event[np.maximum(position, 0)]], 0)
    length = np.where(position >= 0, np.minimum(position - start + 1, max_len), 0)
    first = position - length + 1
    offsets = np.arange(max_len)
    index = first[:, None] + offsets[None, :]
    index[offsets[None, :] >= length[:, None]] = -1
    return index

"""Featurization of behavior sequences: events table + ``schema.json`` -> integer and float arrays.

Every event becomes a fixed set of model inputs, computed once for the whole table:

- categorical fields: a vocabulary of the most frequent values (index 2..) with an out-of-vocabulary
  bucket (index 1), or, above ``max_vocab`` distinct values (e.g. ``terminal_id``), a stable hash
  into ``hash_buckets`` buckets; index 0 means missing / padding;
- numeric fields: signed ``log1p``, standardized, plus a quantile bucket (the target of masked
  event modeling; 0 = missing);
- time: log gap to the entity's previous event, hour of day, weekday; the gap from the last event
  to the case is a per-case input (:func:`case_positions`);
- text fields: character n-grams hashed into ``text_buckets`` ids (mean-pooled by the model).

A case's sequence is its entity's events up to the case's ``ts``, the last L of them, ending with
the case's own event (:func:`case_positions`; :func:`with_case_events` adds the case's own event
from its fields where the events table lacks it). Events are stored sorted by (entity, ts), so
each entity's whole history is one contiguous slice.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

PAD = 0
OOV = 1
GAP_SCALE = 10.0  # log1p(seconds) is at most ~18 for a year; /10 keeps it near unit scale


def stable_hash(values: np.ndarray) -> np.ndarray:
    """Process-independent uint64 hash of strings (pandas' SipHash with its fixed key)."""
    return pd.util.hash_array(np.asarray(values, dtype=object).astype(str).astype(object))


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def char_ngrams(text: str, n: int) -> list[str]:
    padded = f"^{text}$"
    if len(padded) <= n:
        return [padded]
    return [padded[i : i + n] for i in range(len(padded) - n + 1)]


@dataclass
class EventFeatures:
    """Model inputs for N events (rows in the order they were given).

    Attributes
    ----------
    cat : (N, C) int64, categorical indices (0 = missing).
    num : (N, M) float32, standardized signed-log values (0 where missing).
    num_bucket : (N, M) int64, quantile bucket 1..num_buckets (0 = missing).
    time_num : (N, 2) float32, [log1p(gap to previous event in seconds) / 10, is_first_event].
    hour : (N,) int64 in 0..23.
    weekday : (N,) int64 in 0..6.
    text : (N, X, G) int64, hashed character n-gram ids (0 = padding).
    """

    cat: np.ndarray
    num: np.ndarray
    num_bucket: np.ndarray
    time_num: np.ndarray
    hour: np.ndarray
    weekday: np.ndarray
    text: np.ndarray

    def __len__(self) -> int:
        return len(self.hour)

    def take(self, index: np.ndarray) -> EventFeatures:
        """Rows at ``index`` (any shape); index -1 gives an all-zero padding row."""
        index = np.asarray(index, dtype=np.int64)
        pad = index < 0
        safe = np.where(pad, 0, index)
        out = {}
        for f in fields(self):
            arr = getattr(self, f.name)
            taken = arr[safe]
            if pad.any():
                taken[pad] = 0
            out[f.name] = taken
        return EventFeatures(**out)


@dataclass
class EntitySequences:
    """All events featurized and sorted by (entity, ts).

    Attributes
    ----------
    features : EventFeatures of the sorted events.
    entity_ids : (E,) object, the distinct entities in sorted order.
    offsets : (E + 1,) int64, entity e's events are rows ``offsets[e]:offsets[e + 1]``.
    ts : (N,) int64 nanoseconds of the sorted events.
    order : (N,) int64, row of the input events table for each sorted event.
    """

    features: EventFeatures
    entity_ids: np.ndarray
    offsets: np.ndarray
    ts: np.ndarray
    order: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class Featurizer:
    """Learns vocabularies, scales and buckets from an events table; turns events into arrays.

    Parameters
    ----------
    max_vocab : int
        Categorical fields with more distinct values than this are hashed.
    min_count : int
        Values seen fewer times go to the out-of-vocabulary bucket.
    hash_buckets : int
        Buckets for hashed categorical fields.
    num_buckets : int
        Quantile buckets per numeric field.
    text_buckets, ngram, max_ngrams : int
        Hash buckets, n-gram size and n-grams kept per text value.
    """

    def __init__(
        self,
        *,
        max_vocab: int = 2000,
        min_count: int = 2,
        hash_buckets: int = 8192,
        num_buckets: int = 32,
        text_buckets: int = 4096,
        ngram: int = 3,
        max_ngrams: int = 32,
    ) -> None:
        self.max_vocab = max_vocab
        self.min_count = min_count
        self.hash_buckets = hash_buckets
        self.num_buckets = num_buckets
        self.text_buckets = text_buckets
        self.ngram = ngram
        self.max_ngrams = max_ngrams
        self.categorical: list[dict[str, Any]] = []
        self.numeric: list[dict[str, Any]] = []
        self.text: list[str] = []

    # ----------------------------------------------------------------- fitting
    def fit(self, events: pd.DataFrame, schema: dict | None = None) -> Featurizer:
        """Learn the field encodings from ``events`` (columns ``entity_id``, ``ts``, fields)."""
        spec = _event_field_spec(events, schema)
        self.categorical = []
        for name in spec["categorical"]:
            values = events[name].dropna().astype(str)
            counts = values.value_counts()
            if len(counts) > self.max_vocab:
                self.categorical.append(
                    {"name": name, "kind": "hash", "size": self.hash_buckets + 1}
                )
            else:
                kept = [str(v) for v in counts[counts >= self.min_count].index]
                self.categorical.append(
                    {"name": name, "kind": "vocab", "vocab": kept, "size": len(kept) + 2}
                )
        self.numeric = []
        for name in spec["numeric"]:
            x = signed_log1p(pd.to_numeric(events[name], errors="coerce").to_numpy(np.float64))
            x = x[np.isfinite(x)]
            if len(x) == 0:
                x = np.zeros(1)
            rng = np.random.default_rng(0)
            sample = rng.choice(x, size=min(len(x), 200_000), replace=False)
            qs = np.quantile(sample, np.linspace(0, 1, self.num_buckets + 1)[1:-1])
            self.numeric.append(
                {
                    "name": name,
                    "mean": float(x.mean()),
                    "std": float(x.std() or 1.0),
                    "edges": [float(q) for q in np.unique(qs)],
                }
            )
        self.text = list(spec["text"])
        return self

    # ---------------------------------------------------------------- transform
    def transform(self, events: pd.DataFrame, prev_ts: np.ndarray | None = None) -> EventFeatures:
        """Featurize ``events`` row by row.

        Parameters
        ----------
        events : DataFrame with ``ts`` and the fitted fields.
        prev_ts : (N,) int64 nanoseconds of each event's previous event of the same entity
            (-1 for an entity's first event); computed by :meth:`sequences`.
        """
        n = len(events)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, field in enumerate(self.categorical):
            col = events[field["name"]]
            missing = col.isna().to_numpy()
            if field["kind"] == "hash":
                idx = 1 + (stable_hash(col.fillna("").to_numpy()) % self.hash_buckets).astype(
                    np.int64
                )
            else:
                lookup = {v: i + 2 for i, v in enumerate(field["vocab"])}
                idx = col.astype(str).map(lookup).fillna(OOV).to_numpy(np.int64)
            idx[missing] = PAD
            cat[:, j] = idx
        num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        num_bucket = np.zeros((n, len(self.numeric)), dtype=np.int64)
        for j, field in enumerate(self.numeric):
            raw = pd.to_numeric(events[field["name"]], errors="coerce").to_numpy(np.float64)
            x = signed_log1p(raw)
            ok = np.isfinite(x)
            num[:, j] = np.where(ok, (x - field["mean"]) / field["std"], 0.0)
            num_bucket[:, j] = np.where(
                ok, 1 + np.searchsorted(np.asarray(field["edges"]), np.where(ok, x, 0.0)), 0
            )
        ts = _ts_ns(events["ts"])
        time_num = np.zeros((n, 2), dtype=np.float32)
        if prev_ts is not None:
            first = prev_ts < 0
            gap_s = np.where(first, 0, (ts - prev_ts) / 1e9)
            time_num[:, 0] = np.log1p(np.maximum(gap_s, 0.0)) / GAP_SCALE
            time_num[:, 1] = first
        stamps = pd.DatetimeIndex(pd.to_datetime(ts, unit="ns"))
        text = np.zeros((n, len(self.text), self.max_ngrams), dtype=np.int64)
        for j, name in enumerate(self.text):
            text[:, j, :] = self._text_ids(events[name])
        return EventFeatures(
            cat=cat,
            num=num,
            num_bucket=num_bucket,
            time_num=time_num,
            hour=stamps.hour.to_numpy(np.int64),
            weekday=stamps.weekday.to_numpy(np.int64),
            text=text,
        )

    def _text_ids(self, column: pd.Series) -> np.ndarray:
        values = column.fillna("").astype(str)
        codes, uniques = pd.factorize(values)
        table = np.zeros((len(uniques), self.max_ngrams), dtype=np.int64)
        for u, value in enumerate(uniques):
            if not value:
                continue
            grams = char_ngrams(value.lower(), self.ngram)[: self.max_ngrams]
            table[u, : len(grams)] = 1 + (stable_hash(np.array(grams)) % self.text_buckets)
        return table[codes]

    def sequences(self, events: pd.DataFrame) -> EntitySequences:
        """Sort ``events`` by (entity, ts) and featurize them, with gaps to the previous event."""
        entity = events["entity_id"].astype(str).to_numpy()
        ts = _ts_ns(events["ts"])
        codes, entity_ids = pd.factorize(entity, sort=True)
        order = np.lexsort((np.arange(len(ts)), ts, codes))
        codes_sorted = codes[order]
        ts_sorted = ts[order]
        prev_ts = np.full(len(ts), -1, dtype=np.int64)
        same = codes_sorted[1:] == codes_sorted[:-1]
        prev_ts[1:][same] = ts_sorted[:-1][same]
        sorted_events = events.iloc[order]
        features = self.transform(sorted_events, prev_ts=prev_ts)
        counts = np.bincount(codes_sorted, minlength=len(entity_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return EntitySequences(
            features=features,
            entity_ids=np.asarray(entity_ids, dtype=object),
            offsets=offsets,
            ts=ts_sorted,
            order=order.astype(np.int64),
        )

    # ------------------------------------------------------------------ state
    @property
    def cat_cardinalities(self) -> list[int]:
        return [int(f["size"]) for f in self.categorical]

    def state_dict(self) -> dict[str, Any]:
        """Plain types only (safe for ``torch.load(weights_only=True)``)."""
        return {
            "params": {
                "max_vocab": self.max_vocab,
                "min_count": self.min_count,
                "hash_buckets": self.hash_buckets,
                "num_buckets": self.num_buckets,
                "text_buckets": self.text_buckets,
                "ngram": self.ngram,
                "max_ngrams": self.max_ngrams,
            },
            "categorical": [dict(f) for f in self.categorical],
            "numeric": [dict(f) for f in self.numeric],
            "text": list(self.text),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Featurizer:
        featurizer = cls(**state["params"])
        featurizer.categorical = [dict(f) for f in state["categorical"]]
        featurizer.numeric = [dict(f) for f in state["numeric"]]
        featurizer.text = list(state["text"])
        return featurizer


def _ts_ns(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        # numbers are taken as seconds since the epoch
        return (column.to_numpy(np.float64) * 1e9).astype(np.int64)
    return pd.to_datetime(column).to_numpy("datetime64[ns]").astype(np.int64)


def _event_field_spec(events: pd.DataFrame, schema: dict | None) -> dict[str, list[str]]:
    spec = (schema or {}).get("events") or {}
    reserved = {"entity_id", "ts"}
    known = {
        k: [c for c in spec.get(k, []) if c in events.columns]
        for k in ("categorical", "numeric", "text")
    }
    if spec:
        return known
    inferred: dict[str, list[str]] = {"categorical": [], "numeric": [], "text": []}
    for name in events.columns:
        if name in reserved:
            continue
        if pd.api.types.is_numeric_dtype(events[name]):
            inferred["numeric"].append(name)
        else:
            inferred["categorical"].append(name)
    return inferred


def case_positions(
    seqs: EntitySequences,
    entity_id: np.ndarray,
    ts: np.ndarray | None,
    *,
    own_event: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each case reads its sequence: the last event of its entity at or before ``ts``.

    With ``own_event`` (the default) the case's own event, the one at its ``ts``
    (:func:`with_case_events` adds it where the events table lacks it), is the last position:
    what the case itself carries (its amount, terminal, time) is known when it is scored.
    Without it, the last event strictly before ``ts``. Nothing after ``ts`` counts either way.

    Parameters
    ----------
    seqs : EntitySequences.
    entity_id : (n_cases,) entity of each case.
    ts : (n_cases,) int64 nanoseconds, or None (then every event of the entity counts).
    own_event : bool, read at the case's own event (True) or just before it (False).

    Returns
    -------
    entity_index : (n_cases,) int64 index into ``seqs.entity_ids`` (-1: entity has no events).
    position : (n_cases,) int64 row in the sorted events of the case's last event (-1: none).
    case_gap : (n_cases,) float32 log1p(seconds from that event to the case) / 10 (0 if none).
    """
    entity_id = np.asarray(entity_id).astype(str)
    entity_index = pd.Index(seqs.entity_ids.astype(str)).get_indexer(entity_id).astype(np.int64)
    has = entity_index >= 0
    start = np.where(has, seqs.offsets[np.maximum(entity_index, 0)], 0)
    end = np.where(has, seqs.offsets[np.maximum(entity_index, 0) + 1], 0)
    if ts is None:
        n_before = end - start
        case_gap = np.zeros(len(entity_id), dtype=np.float32)
        position = np.where(n_before > 0, end - 1, -1)
        return entity_index, position.astype(np.int64), case_gap
    # Merge cases into the sorted events: a case sorts after (own_event) or before the events of
    # equal (entity, ts), so the count of events ahead of it is the row just past its last
    # event at (or strictly before) its ts.
    ent_of_event = np.repeat(np.arange(len(seqs.entity_ids), dtype=np.int64), seqs.lengths)
    ts = np.asarray(ts, dtype=np.int64)
    n_ev, n_case = len(ent_of_event), len(entity_id)
    ent = np.concatenate([ent_of_event, entity_index])
    times = np.concatenate([seqs.ts, ts])
    is_event = np.concatenate([np.ones(n_ev, np.int8), np.zeros(n_case, np.int8)])
    tie = (1 - is_event) if own_event else is_event
    merged = np.lexsort((tie, times, ent))
    events_before = np.cumsum(is_event[merged]) - is_event[merged]
    found = np.empty(n_case, dtype=np.int64)
    case_slots = merged >= n_ev
    found[merged[case_slots] - n_ev] = events_before[case_slots] - 1
    valid = has & (found >= start) & (found < end)
    position = np.where(valid, found, -1).astype(np.int64)
    case_gap = np.zeros(n_case, dtype=np.float32)
    gap_s = (ts[valid] - seqs.ts[found[valid]]) / 1e9
    case_gap[valid] = np.log1p(np.maximum(gap_s, 0.0)) / GAP_SCALE
    return entity_index, position, case_gap


def with_case_events(events: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """``events`` plus each case's own event where the table lacks one.

    A case's own event is an event of its entity at its ``ts``; where none exists (the events
    table holds other behaviour than the cases themselves), one is made from the case's values of
    the event fields it carries (``amount``, ``terminal_id``, ...: the columns both tables have).
    Cases without ``ts`` or without any event field add nothing.
    """
    fields = [c for c in events.columns if c not in {"entity_id", "ts"} and c in cases.columns]
    if "ts" not in cases.columns or "ts" not in events.columns or not fields or cases.empty:
        return events
    keys = ["entity_id", "ts"]
    case_keys = cases[keys].assign(entity_id=cases["entity_id"].astype(str))
    case_keys["ts"] = _ts_ns(cases["ts"])
    event_keys = pd.DataFrame(
        {"entity_id": events["entity_id"].astype(str).to_numpy(), "ts": _ts_ns(events["ts"])}
    )
    known = pd.MultiIndex.from_frame(event_keys.drop_duplicates())
    missing = ~pd.MultiIndex.from_frame(case_keys).isin(known)
    if not missing.any():
        return events
    own = cases.loc[missing, ["entity_id", "ts", *fields]].drop_duplicates(subset=keys)
    own = own.assign(ts=pd.to_datetime(_ts_ns(own["ts"]), unit="ns"))
    base = events.assign(ts=pd.to_datetime(_ts_ns(events["ts"]), unit="ns"))
    return pd.concat([base, own], ignore_index=True)

"""The dataset's behaviour-sequence encoder: where it lives, pretraining it, here or on a worker.

One encoder per dataset version (the snapshot's fingerprint), in
``ARTIFACTS_DIR/encoders/<dataset id>/encoder-<key>.pt``; every iteration and model version of that
data reuses it until an admin pretrains a new one. ``on`` pretrains it inside the iteration that
needs it (the experts wait); ``auto`` never makes them wait: the iteration goes on without
embeddings and asks a worker to pretrain the encoder in the background
(:func:`encoder_pretrain_request`), the next iterations check the embeddings once it is there.
A claim file marks a pretraining in progress, so a second iteration does not start another; a
claim older than its budget plus :data:`CLAIM_MARGIN_S` is taken for a dead worker's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from labelapp.services.chunks import chunk_claim, claim_is_stale
from labelapp.services.dispatch import ENCODER_PRETRAIN, task_send

CLAIM_MARGIN_S = 600.0


@dataclass(frozen=True)
class EncoderPlace:
    """Where a dataset version's encoder is (or will be) and its pretraining claim."""

    folder: Path
    key: str

    @property
    def encoder(self) -> Path:
        return self.folder / f"encoder-{self.key}.pt"

    @property
    def claim(self) -> Path:
        return self.folder / f".pretraining-{self.key}"

    @property
    def embeddings(self) -> Path:
        return self.folder / f"embeddings-{self.key}.npy"


def encoder_place(dataset_id: int, snapshot: Path) -> EncoderPlace:
    from encoders import api as encoders_api

    folder = Path(settings.ARTIFACTS_DIR) / "encoders" / str(dataset_id)
    folder.mkdir(parents=True, exist_ok=True)
    return EncoderPlace(folder, encoders_api.dataset_fingerprint(snapshot))


def encoder_pretrain(
    place: EncoderPlace,
    snapshot: Path,
    *,
    minutes: float,
    progress: Callable | None = None,
) -> Path:
    """Pretrain the encoder of ``snapshot`` into ``place.encoder`` (written whole or not at all);
    a no-op when it exists."""
    from encoders import api as encoders_api

    if place.encoder.exists():
        return place.encoder
    threads = int(getattr(settings, "LOOP_THREADS", 0)) or None  # None: ENCODERS_THREADS or 1
    tmp = place.folder / f".encoder-{place.key}-{os.getpid()}.pt"
    try:
        encoders_api.pretrain_for_dataset(
            snapshot, tmp, minutes=minutes, progress=progress, threads=threads
        )
        tmp.replace(place.encoder)
    finally:
        tmp.unlink(missing_ok=True)
    return place.encoder


def encoder_pretrain_request(place: EncoderPlace, snapshot: Path, *, minutes: float) -> bool:
    """Ask a worker to pretrain the encoder in the background; False when one is at it already
    (a fresh claim) or the encoder exists."""
    if place.encoder.exists():
        return False
    if place.claim.exists() and claim_is_stale(place.claim, minutes * 60 + CLAIM_MARGIN_S):
        place.claim.unlink(missing_ok=True)  # its worker died: take it over
    if not chunk_claim(place.claim):
        return False
    task_send(ENCODER_PRETRAIN, str(place.folder), place.key, str(snapshot), float(minutes))
    return True


def encoder_pretrain_claimed(place: EncoderPlace, snapshot: Path, *, minutes: float) -> dict:
    """The background task's work: pretrain, then release the claim whatever happens."""
    try:
        encoder_pretrain(place, snapshot, minutes=minutes)
        return {"encoder": place.encoder.name, "pretrained": True}
    finally:
        place.claim.unlink(missing_ok=True)

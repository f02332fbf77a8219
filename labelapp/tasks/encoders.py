"""Encoder tasks: a thin wrapper over :mod:`labelapp.services.encoder_pretraining`."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from labelapp.services.encoder_pretraining import EncoderPlace, encoder_pretrain_claimed


@shared_task(name="labelapp.encoder_pretrain")
def encoder_pretrain_task(folder: str, key: str, snapshot: str, minutes: float) -> dict:
    """Pretrain a dataset version's encoder in the background (the ``auto`` setting asked)."""
    place = EncoderPlace(Path(folder), key)
    return encoder_pretrain_claimed(place, Path(snapshot), minutes=minutes)

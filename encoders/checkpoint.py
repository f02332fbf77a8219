"""One-file checkpoints: config, featurizer state, weights and history, all plain types."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from encoders.featurize import Featurizer
from encoders.model import AutoRiskConfig, AutoRiskEncoder


def save(path: Path, model: AutoRiskEncoder, featurizer: Featurizer, history: dict | None = None):
    """Write ``{"config", "featurizer", "state_dict", "history"}`` atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "config": asdict(model.config),
            "featurizer": featurizer.state_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": history or {},
        },
        tmp,
    )
    tmp.replace(path)
    return path


def load_raw(path: Path) -> dict:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def load(path: Path) -> tuple[AutoRiskEncoder, Featurizer]:
    """Rebuild the encoder (in eval mode) and its featurizer from a checkpoint file."""
    raw = load_raw(path)
    model = AutoRiskEncoder(AutoRiskConfig(**raw["config"]))
    model.load_state_dict(raw["state_dict"])
    model.eval()
    return model, Featurizer.from_state(raw["featurizer"])


def own_event_columns(config: dict) -> int:
    """How many of the last columns of a case's vector are about the case's own event (its
    per-field surprise, PIT and z-score columns) for a checkpoint's ``config``; 0 without the
    next-event head."""
    return AutoRiskConfig(**config).n_surprise

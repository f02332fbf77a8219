"""The thin ``pretrain_encoder`` command: a dataset folder or name in, a checkpoint out."""

from __future__ import annotations

from io import StringIO

import pytest
import torch
from django.core.management import CommandError, call_command

from encoders import checkpoint
from tests.encoders.conftest import make_events, write_dataset


def test_pretrain_encoder_from_a_folder_writes_a_loadable_checkpoint(tmp_path):
    torch.set_num_threads(1)
    data = write_dataset(tmp_path / "ds", make_events(n_entities=12))
    out = StringIO()
    call_command(
        "pretrain_encoder",
        "--data",
        str(data),
        "--minutes",
        "0.03",
        "--out",
        str(tmp_path / "enc.pt"),
        stdout=out,
        stderr=StringIO(),
    )
    assert "checkpoint written" in out.getvalue()
    model, featurizer = checkpoint.load(tmp_path / "enc.pt")
    history = checkpoint.load_raw(tmp_path / "enc.pt")["history"]
    assert history["stop_reason"] in {"time_budget", "converged"} and history["steps"] >= 1
    assert featurizer.cat_cardinalities == model.config.cat_cardinalities


@pytest.mark.django_db
def test_pretrain_encoder_unknown_dataset_is_a_clear_error():
    with pytest.raises(CommandError, match="no dataset named"):
        call_command("pretrain_encoder", "--dataset", "no-such-dataset", stdout=StringIO())

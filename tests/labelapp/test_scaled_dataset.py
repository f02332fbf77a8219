"""make_scaled_dataset: N copies with fresh ids and the same times, features and labels."""

import json

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from tests.learning.test_benchmark import write_dataset


def test_copies_have_fresh_ids_and_keep_everything_else(tmp_path):
    src = tmp_path / "src"
    original = write_dataset(src, n=500)
    events = original[["entity_id", "ts", "amount", "terminal_id"]]
    events.to_parquet(src / "events.parquet")
    schema = json.loads((src / "schema.json").read_text())
    schema["events"] = {"numeric": ["amount"], "categorical": ["terminal_id"]}
    (src / "schema.json").write_text(json.dumps(schema))

    call_command(
        "make_scaled_dataset", "--data", str(src), "--factor", "3", "--out", str(tmp_path / "big")
    )

    cases = pd.read_parquet(tmp_path / "big" / "cases.parquet")
    assert len(cases) == 3 * len(original)
    assert cases["case_id"].is_unique
    copy2 = cases[cases["case_id"].str.startswith("k2-")].reset_index(drop=True)
    assert len(copy2) == len(original)
    # Same times, numbers and labels; identifiers prefixed so copies never share an entity.
    pd.testing.assert_series_equal(copy2["ts"], original["ts"], check_names=False)
    pd.testing.assert_series_equal(copy2["amount"], original["amount"], check_names=False)
    assert (copy2["label"] == original["label"]).all()
    assert (copy2["seed_positive"] == original["seed_positive"]).all()
    assert (copy2["entity_id"] == "k2-" + original["entity_id"]).all()
    assert (copy2["terminal_id"] == "k2-" + original["terminal_id"]).all()
    assert set(cases["entity_id"][: len(original)]) == set(original["entity_id"])
    big_events = pd.read_parquet(tmp_path / "big" / "events.parquet")
    assert len(big_events) == 3 * len(events)
    assert big_events["entity_id"].str.startswith("k1-").sum() == len(events)
    assert json.loads((tmp_path / "big" / "schema.json").read_text()) == schema


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(CommandError, match="cases.parquet"):
        call_command("make_scaled_dataset", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    write_dataset(tmp_path / "src", n=50)
    with pytest.raises(CommandError, match="factor"):
        call_command(
            "make_scaled_dataset",
            "--data",
            str(tmp_path / "src"),
            "--factor",
            "0",
            "--out",
            str(tmp_path / "o"),
        )

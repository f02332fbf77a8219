"""The thin `benchmark` management command runs the library harness with the issue's options."""

import json

from django.core.management import call_command

from tests.learning.test_benchmark import write_dataset


def test_benchmark_command_writes_report(tmp_path):
    write_dataset(tmp_path / "data", n=2000)
    call_command(
        "benchmark",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--iterations",
        "1",
        "--batch-size",
        "20",
        "--expert-recall",
        "1.0",
        "--expert-false-positive",
        "0.0",
        "--seed",
        "3",
        "--embeddings",
        "none",
        "--methods",
        "active_pu,naive_pu",
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["methods"]) == ["active_pu", "naive_pu"]
    assert report["settings"]["seed"] == 3 and report["settings"]["batch_size"] == 20
    assert report["methods"]["active_pu"]["labels_used"] == 20

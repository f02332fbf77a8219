"""benchmark_app end to end: import, a real worker, answers through the REST API, the bundle."""

import json

import pytest
from django.core.management import call_command

from labelapp.models import AuditEvent, Dataset, Label
from tests.learning.test_benchmark import write_dataset

pytestmark = pytest.mark.worker


def test_benchmark_app_runs_the_harness_protocol_through_the_product(tmp_path, celery_worker):
    write_dataset(tmp_path / "data", n=2000)
    call_command(
        "benchmark_app",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--iterations",
        "2",
        "--batch-size",
        "20",
        "--n-clusters",
        "4",
        "--n-estimators",
        "30",
        "--workers",
        "0",  # the test's own worker, on the test database
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["methods"]) == ["active_pu_app", "active_pu"]
    app, harness = report["methods"]["active_pu_app"], report["methods"]["active_pu"]
    assert app["labels_used"] == harness["labels_used"] == 40
    # The same loop under the same answers: the same model, hence the same figures.
    assert abs(app["pr_auc"] - harness["pr_auc"]) <= 0.01
    assert abs(app["recall_at_precision"]["0.8"] - harness["recall_at_precision"]["0.8"]) <= 0.01
    assert app["positives_found"] == harness["positives_found"] > 0
    stages = report["app"]["iterations"][0]["stages"]
    assert {"load", "features", "train", "score", "select", "finalize"} <= set(stages)
    assert report["app"]["api_requests"] >= 2 * 40
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| active_pu_app |" in md and "## The app run" in md

    dataset = Dataset.objects.get(name=report["app"]["dataset"])
    assert "label" not in dataset.feature_columns  # the truth never reaches the database
    assert Label.objects.filter(case__dataset=dataset).count() == 40
    assert Label.objects.filter(case__dataset=dataset, via="api").count() == 40
    assert AuditEvent.objects.filter(verb="label.create", via="api").count() >= 40

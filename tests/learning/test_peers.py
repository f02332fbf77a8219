"""The peer benchmark (learning.bench.peers) runs its protocol on small data without pulearn."""

import json
import sys

import numpy as np

from learning.bench import peers
from learning.features import load_dataset
from tests.learning.test_benchmark import write_dataset


def test_peer_split_is_stratified_70_30_without_ts(tmp_path):
    write_dataset(tmp_path / "flat", with_ts=False)
    ds = load_dataset(tmp_path / "flat")
    split = peers.peer_split(ds, seed=1)
    assert abs(len(split.test) / ds.n_cases - 0.3) < 0.01
    assert abs(ds.labels[split.pool].mean() - ds.labels[split.test].mean()) < 0.01
    problem = peers.build_problem(ds, 1, lambda *_: None)
    # A random 10% of the train part's positives are labeled; the test part has none.
    assert problem.s_train.sum() == round(0.1 * problem.y_train.sum())
    assert (problem.y_train[problem.s_train == 1] == 1).all()


def test_report_with_a_missing_library(tmp_path, monkeypatch):
    """A method whose package is missing is reported as skipped, never a crash; the project's
    learner and the oracle are measured on the test part's truth."""
    write_dataset(tmp_path / "timed")
    monkeypatch.setitem(sys.modules, "pulearn", None)  # as if the bench extra were not installed
    reports = peers.main(
        [
            "--data",
            str(tmp_path / "timed"),
            "--out",
            str(tmp_path / "out"),
            "--methods",
            "two_step_pu",
            "pulearn_bagging",
            "oracle",
        ]
    )
    summary = reports[0]["methods"]
    assert "not installed" in summary["pulearn_bagging"]["skipped"]
    for name in ("two_step_pu", "oracle"):
        assert 0.0 < summary[name]["pr_auc"] <= 1.0
        assert np.isfinite(summary[name]["recall_at_precision_0.8"])
    assert reports[0]["seeds"] == [0]  # a time split: one problem whatever the seeds
    assert reports[0]["verdict"] == {"compared": False}
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written[0]["dataset"] == reports[0]["dataset"]
    assert "`two_step_pu`" in (tmp_path / "out" / "report.md").read_text()

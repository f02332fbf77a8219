"""Import: every bad input rejected with its report and nothing written; good data lands whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from labelapp.importing.report import Problem
from labelapp.models import AuditEvent, Case, Dataset, Event
from labelapp.services.imports import ImportRejected, dataset_import
from tests.labelapp.factories import make_dataset_dir

N_CASES = 300


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path) -> Path:
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.ARTIFACTS_DIR


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory) -> Path:
    """A valid CSV dataset; tests copy and spoil it."""
    return make_dataset_dir(tmp_path_factory.mktemp("good"), n_cases=N_CASES, fmt="csv")


@pytest.fixture
def spoil(good_csv, tmp_path):
    """Copy the good dataset, let the test edit its tables, and return the folder."""

    def _spoil(edit_cases=None, edit_events=None) -> Path:
        folder = tmp_path / "bad"
        folder.mkdir()
        (folder / "schema.json").write_text((good_csv / "schema.json").read_text())
        for table, edit in (("cases", edit_cases), ("events", edit_events)):
            frame = pd.read_csv(good_csv / f"{table}.csv", dtype=str, keep_default_na=False)
            if edit is not None:
                frame = edit(frame)
            frame.to_csv(folder / f"{table}.csv", index=False)
        return folder

    return _spoil


def db_state(artifacts: Path) -> dict:
    folders = (
        sorted(p.name for p in (artifacts / "datasets").glob("*")) if artifacts.exists() else []
    )
    return {
        "datasets": Dataset.objects.count(),
        "cases": Case.objects.count(),
        "events": Event.objects.count(),
        "audit": AuditEvent.objects.count(),
        "folders": folders,
    }


def rejected(folder: Path, artifacts: Path, **kwargs) -> list[Problem]:
    """Import ``folder``, expect a rejection that changed nothing; return its problems."""
    before = db_state(artifacts)
    with pytest.raises(ImportRejected) as info:
        dataset_import(name="spoiled", source_dir=folder, **kwargs)
    assert db_state(artifacts) == before
    return info.value.report.problems


def one(problems: list[Problem], code: str, column: str | None = None, file: str | None = None):
    found = [
        p
        for p in problems
        if p.code == code and column in (None, p.column) and file in (None, p.file)
    ]
    assert len(found) == 1, (code, column, problems)
    return found[0]


def _set(frame: pd.DataFrame, row: int, column: str, value: str) -> pd.DataFrame:
    frame.loc[row - 1, column] = value  # row: 1-based data row number, as in reports
    return frame


@pytest.mark.django_db
class TestRejections:
    def test_missing_case_id_column(self, spoil, artifacts):
        problems = rejected(spoil(lambda f: f.drop(columns="case_id")), artifacts)
        assert one(problems, "missing_case_id").column == "case_id"

    def test_missing_case_id_values(self, spoil, artifacts):
        folder = spoil(lambda f: _set(_set(f, 5, "case_id", ""), 9, "case_id", ""))
        problem = one(rejected(folder, artifacts), "missing_case_id")
        assert (problem.count, problem.rows) == (2, [5, 9])

    def test_duplicate_case_id(self, spoil, artifacts):
        folder = spoil(lambda f: _set(f, 10, "case_id", f.loc[2, "case_id"]))
        problem = one(rejected(folder, artifacts), "duplicate_case_id")
        assert (problem.count, problem.rows, problem.file) == (1, [10], "cases.csv")

    def test_wrong_types(self, spoil, artifacts):
        def edit(f):
            _set(f, 7, "amount", "abc")
            _set(f, 8, "seed_positive", "2")
            return _set(f, 11, "ts", "yesterday")

        problems = rejected(spoil(edit), artifacts)
        assert one(problems, "wrong_type", "amount").rows == [7]
        assert one(problems, "wrong_type", "seed_positive").rows == [8]
        assert one(problems, "wrong_type", "ts").rows == [11]

    def test_nan_where_not_allowed(self, spoil, artifacts):
        folder = spoil(
            lambda f: _set(f, 4, "entity_id", ""),
            edit_events=lambda e: _set(e, 6, "ts", ""),
        )
        problems = rejected(folder, artifacts)
        assert one(problems, "nan_not_allowed", "entity_id", "cases.csv").rows == [4]
        assert one(problems, "nan_not_allowed", "ts", "events.csv").rows == [6]

    def test_unknown_and_missing_columns(self, spoil, artifacts):
        problems = rejected(spoil(lambda f: f.assign(extra="1").drop(columns="hour")), artifacts)
        assert one(problems, "unknown_column").column == "extra"
        assert one(problems, "missing_column").column == "hour"

    def test_events_of_unknown_entities(self, spoil, artifacts):
        folder = spoil(
            edit_events=lambda e: _set(_set(e, 3, "entity_id", "nobody"), 12, "entity_id", "x")
        )
        problem = one(rejected(folder, artifacts), "unknown_entity")
        assert (problem.count, problem.rows, problem.file) == (2, [3, 12], "events.csv")

    @pytest.mark.parametrize(
        "name, content",
        [
            ("cases.xlsx", b"PK\x03\x04 a zip file"),
            ("cases.parquet", b"case_id,entity_id\n1,2\n"),
            ("cases.csv", b"\x00\x01\x02 binary"),
        ],
    )
    def test_neither_csv_nor_parquet(self, spoil, artifacts, name, content):
        folder = spoil()
        (folder / "cases.csv").unlink()
        (folder / name).write_bytes(content)
        assert one(rejected(folder, artifacts), "not_csv_or_parquet").file == name

    @pytest.mark.parametrize("content", [b"", b"entity_id,ts,amount,terminal_id\n"])
    def test_empty_file(self, spoil, artifacts, content):
        folder = spoil()
        (folder / "events.csv").write_bytes(content)
        assert one(rejected(folder, artifacts), "empty_file").file == "events.csv"

    def test_every_problem_in_one_report(self, spoil, artifacts):
        folder = spoil(
            lambda f: _set(_set(f, 10, "case_id", f.loc[2, "case_id"]), 7, "amount", "abc"),
            edit_events=lambda e: _set(e, 3, "entity_id", "nobody"),
        )
        codes = {p.code for p in rejected(folder, artifacts)}
        assert {"duplicate_case_id", "wrong_type", "unknown_entity"} <= codes

    def test_failure_during_write_leaves_nothing(self, good_csv, artifacts):
        def explode(stage, done, total):
            if stage == "importing events":
                raise RuntimeError("disk full")

        before = db_state(artifacts)
        with pytest.raises(RuntimeError):
            dataset_import(name="half", source_dir=good_csv, progress=explode)
        assert db_state(artifacts) == before
        assert not list((artifacts / "datasets").glob(".importing-*"))

    def test_command_prints_the_report_and_fails(self, spoil):
        folder = spoil(lambda f: _set(f, 10, "case_id", f.loc[2, "case_id"]))
        with pytest.raises(CommandError, match=r"duplicate|already used"):
            call_command("import_dataset", str(folder), name="spoiled", no_progress=True)
        assert not Dataset.objects.exists()

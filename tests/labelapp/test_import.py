"""Import: every bad input rejected with its report and nothing written; good data lands whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from labelapp.importing.report import Problem
from labelapp.models import AuditEvent, Case, Dataset, Event, Label, PoolState
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services.imports import ImportRejected, dataset_import
from tests.conftest import shared_dataset
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
        "name, content, says",
        [
            ("cases.xlsx", b"PK\x03\x04 a zip file", "zip archive"),
            ("cases.parquet", b"case_id,entity_id\n1,2\n", "neither CSV"),
            ("cases.gz", b"\x1f\x8b\x08 gzip", "name it .csv.gz"),
        ],
    )
    def test_neither_csv_nor_parquet(self, spoil, artifacts, name, content, says):
        folder = spoil()
        (folder / "cases.csv").unlink()
        (folder / name).write_bytes(content)
        problem = one(rejected(folder, artifacts), "not_csv_or_parquet")
        assert problem.file == name and says in problem.message

    # -- issue 15, D11: what is wrong with a file that is not UTF-8 CSV ---------------------------
    def test_a_latin1_file_is_named_as_such(self, good_csv, tmp_path, artifacts):
        folder = tmp_path / "latin1"
        folder.mkdir()
        frame = pd.read_csv(good_csv / "cases.csv", dtype=str, keep_default_na=False)
        frame.loc[3, "terminal_id"] = "café"
        frame.to_csv(folder / "cases.csv", index=False, encoding="latin-1")
        problem = one(rejected(folder, artifacts), "not_utf8")
        assert problem.file == "cases.csv"
        assert "0xE9 on line 5" in problem.message and "Latin-1" in problem.message

    def test_latin1_after_the_first_bytes_is_found_too(self, tmp_path, artifacts):
        folder = make_dataset_dir(tmp_path, n_cases=2000, with_events=False, fmt="csv")
        frame = pd.read_csv(folder / "cases.csv", dtype=str, keep_default_na=False)
        frame.loc[1990, "terminal_id"] = "café"  # far beyond the 64 KiB looked at first
        frame.to_csv(folder / "cases.csv", index=False, encoding="latin-1")
        assert (folder / "cases.csv").stat().st_size > 150_000
        problem = one(rejected(folder, artifacts), "not_utf8")
        assert "0xE9" in problem.message and "Latin-1" in problem.message

    @pytest.mark.parametrize(
        "content, code, says",
        [
            (b"case_id,amount\nc1,1\x00\n", "binary_content", "NUL byte at byte 20"),
            ("case_id,amount\nc1,1\n".encode("utf-16"), "not_utf8", "UTF-16"),
        ],
    )
    def test_binary_content_and_utf16_are_named(self, tmp_path, artifacts, content, code, says):
        folder = tmp_path / "bin"
        folder.mkdir()
        (folder / "cases.csv").write_bytes(content)
        problem = one(rejected(folder, artifacts), code)
        assert says in problem.message, problem.message

    # -- issue 15, D4: infinite numbers ---------------------------------------------------------
    @pytest.mark.parametrize("value", ["inf", "-inf", "1e309", "-Infinity"])
    @pytest.mark.parametrize("with_schema", [True, False])
    def test_infinite_numbers_are_refused(self, spoil, artifacts, value, with_schema):
        folder = spoil(
            lambda f: _set(f, 6, "amount", value), edit_events=lambda e: _set(e, 9, "amount", value)
        )
        if not with_schema:  # inferred numeric: the same rule
            (folder / "schema.json").unlink()
        problems = rejected(folder, artifacts)
        assert one(problems, "not_finite", "amount", "cases.csv").rows == [6]
        assert one(problems, "not_finite", "amount", "events.csv").rows == [9]

    def test_infinite_numbers_in_parquet_are_refused(self, tmp_path, artifacts):
        folder = make_dataset_dir(tmp_path, n_cases=100, with_events=False)
        cases = pd.read_parquet(folder / "cases.parquet")
        cases.loc[[2, 40], "amount"] = [np.inf, -np.inf]
        cases.to_parquet(folder / "cases.parquet", index=False)
        problem = one(rejected(folder, artifacts), "not_finite", "amount")
        assert (problem.count, problem.rows) == (2, [3, 41])

    # -- issue 15: cell sizes and the characters of ids -----------------------------------------
    def test_an_8mb_cell_is_refused(self, spoil, artifacts):
        huge = "x" * (8 * 1024 * 1024)
        problems = rejected(spoil(edit_events=lambda e: _set(e, 2, "terminal_id", huge)), artifacts)
        assert one(problems, "cell_too_long", "terminal_id", "events.csv").rows == [2]

    @pytest.mark.parametrize(
        "case_id",
        ["tx\u202e5gpj.exe", "tx\x07bell", "tx\u200bzero-width", "tx\u2066isolate", "tx\nline"],
    )
    def test_control_and_bidi_characters_in_ids_are_refused(self, spoil, artifacts, case_id):
        folder = spoil(lambda f: _set(_set(f, 4, "case_id", case_id), 7, "entity_id", "e\u202e1"))
        problems = rejected(folder, artifacts)
        assert one(problems, "bad_id_character", "case_id").rows == [4]
        assert one(problems, "bad_id_character", "entity_id").rows == [7]

    def test_ids_longer_than_the_database_holds_are_refused(self, spoil, artifacts):
        problem = one(
            rejected(spoil(lambda f: _set(f, 3, "case_id", "c" * 201)), artifacts), "id_too_long"
        )
        assert (problem.column, problem.rows) == ("case_id", [3])

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


@pytest.mark.django_db
class TestImports:
    def test_imports_cases_events_and_snapshot(self, admin_user, artifacts, tmp_path):
        folder = make_dataset_dir(tmp_path, n_cases=N_CASES, seed=1)
        truth = pd.read_parquet(folder / "cases.parquet")
        dataset = dataset_import(name="demo", source_dir=folder, user=admin_user)

        n_seed = int(truth["seed_positive"].sum())
        assert n_seed > 0
        assert (dataset.n_cases, dataset.n_seed_positive) == (N_CASES, n_seed)
        assert dataset.n_events == len(pd.read_parquet(folder / "events.parquet"))
        assert dataset.cases.count() == N_CASES
        assert dataset.events.count() == dataset.n_events
        assert dataset.cases.filter(pool_state=PoolState.POSITIVE).count() == n_seed
        assert set(dataset.schema["cases"]["categorical"]) == {
            "terminal_id",
            "hour",
            "is_weekend",
            "is_night",
        }
        case = dataset.cases.get(row=7)
        assert case.case_id == truth["case_id"][7]
        assert case.features["amount"] == pytest.approx(truth["amount"][7])
        assert "label" not in case.features  # the truth stays out of the database
        assert case.ts.isoformat().startswith(str(truth["ts"][7]).replace(" ", "T"))

        snapshot = snapshot_dir_for(dataset)
        cases = pq.read_table(snapshot / "cases.parquet")
        assert np.array_equal(cases["row"].to_numpy(), np.arange(N_CASES))
        assert cases["label"].to_pylist() == truth["label"].tolist()  # for the simulated expert
        assert json.loads((snapshot / "schema.json").read_text()) == dataset.schema
        assert pq.read_metadata(snapshot / "events.parquet").num_rows == dataset.n_events

        audit = AuditEvent.objects.get(verb="dataset.import")
        assert (audit.actor, audit.dataset, audit.data["cases"]) == (admin_user, dataset, N_CASES)

    def test_csv_and_parquet_give_the_same_snapshot(self, tmp_path):
        a = dataset_import(name="pq", source_dir=make_dataset_dir(tmp_path / "a", n_cases=200))
        b = dataset_import(
            name="csv", source_dir=make_dataset_dir(tmp_path / "b", n_cases=200, fmt="csv")
        )
        ta = pq.read_table(snapshot_dir_for(a) / "cases.parquet")
        tb = pq.read_table(snapshot_dir_for(b) / "cases.parquet")
        assert ta.schema == tb.schema
        assert ta.equals(tb)
        assert a.schema == b.schema

    def test_the_label_free_columns_are_ready_for_the_first_iteration(self, tmp_path, monkeypatch):
        """The import computes the entity-deviation columns the default loop uses, and they are
        the columns an iteration would compute itself."""
        from labelapp.services import imports
        from labelapp.services.pipeline import (
            read_snapshot_cases,
            snapshot_derived_prepare,
            snapshot_feature_spec,
        )
        from learning.featurespec import deviation_matrix
        from learning.loop import ActiveLoop, LoopParams

        monkeypatch.setattr(imports, "DERIVED_AT_IMPORT_MIN_CASES", 300)
        dataset = dataset_import(name="dev", source_dir=make_dataset_dir(tmp_path, n_cases=300))
        snapshot = snapshot_dir_for(dataset)
        [kept] = list((snapshot / "derived").glob("deviation-*.npy"))
        cases = read_snapshot_cases(snapshot, model_inputs_only=True)
        spec = snapshot_feature_spec(ActiveLoop(LoopParams.from_mapping({})), snapshot, cases)
        np.testing.assert_array_equal(np.load(kept), deviation_matrix(spec, cases))
        assert snapshot_derived_prepare(snapshot) == kept  # the same file: read, not rewritten

    def test_types_inferred_without_schema(self, tmp_path):
        folder = make_dataset_dir(tmp_path, n_cases=200, with_events=False, fmt="csv")
        (folder / "schema.json").unlink()
        dataset = dataset_import(name="inferred", source_dir=folder)
        assert dataset.n_events == 0
        assert dataset.schema["cases"]["categorical"] == ["terminal_id"]
        assert "amount" in dataset.schema["cases"]["numeric"]
        assert "hour" in dataset.schema["cases"]["numeric"]  # integers look numeric
        # The report says which type each column was given.
        inferred = dataset.import_report["inferred"]
        assert inferred["cases"]["terminal_id"] == "categorical"
        assert inferred["cases"]["amount"] == inferred["cases"]["hour"] == "numeric"
        assert set(inferred["cases"]) == set(dataset.feature_columns)
        assert dataset.import_report["warnings"] == []

    def test_a_word_among_numbers_is_warned_about(self, tmp_path, capsys):
        """Issue 15: a word in a numeric column without schema.json made it categorical without a
        word; now the report says so, with the rows to fix."""
        folder = make_dataset_dir(tmp_path, n_cases=200, fmt="csv")
        (folder / "schema.json").unlink()
        frame = pd.read_csv(folder / "cases.csv", dtype=str, keep_default_na=False)
        frame.loc[[4, 120], "amount"] = ["twelve", "12,5"]
        frame.to_csv(folder / "cases.csv", index=False)
        call_command("import_dataset", str(folder), name="worded", no_progress=True)
        dataset = Dataset.objects.get(name="worded")
        report = dataset.import_report
        assert report["inferred"]["cases"]["amount"] == "categorical"
        assert report["inferred"]["events"] == {"amount": "numeric", "terminal_id": "categorical"}
        (warning,) = report["warnings"]
        assert (warning["code"], warning["column"], warning["file"]) == (
            "mostly_numeric",
            "amount",
            "cases.csv",
        )
        assert (warning["count"], warning["rows"]) == (2, [5, 121])
        assert "99.0% of the values are numbers" in warning["message"]
        out = capsys.readouterr().out
        assert "99.0% of the values are numbers" in out and "amount categorical" in out

    def test_gzip_compressed_csv_imports_like_csv(self, good_csv, tmp_path):
        import gzip
        import shutil

        folder = tmp_path / "gz"
        folder.mkdir()
        shutil.copy(good_csv / "schema.json", folder / "schema.json")
        for table in ("cases", "events"):
            with open(good_csv / f"{table}.csv", "rb") as src:
                with gzip.open(folder / f"{table}.csv.gz", "wb") as out:
                    shutil.copyfileobj(src, out)
        gz = dataset_import(name="gz", source_dir=folder)
        plain = dataset_import(name="plain", source_dir=good_csv)
        assert gz.import_report["files"]["cases"]["name"] == "cases.csv.gz"
        assert (gz.n_cases, gz.n_events) == (plain.n_cases, plain.n_events)
        tables = [pq.read_table(snapshot_dir_for(d) / "cases.parquet") for d in (gz, plain)]
        assert tables[0].equals(tables[1])

    def test_reimport_refused_unless_replace(self, admin_user, artifacts, tmp_path):
        first = dataset_import(name="demo", source_dir=make_dataset_dir(tmp_path / "a", 200))
        case = first.cases.first()
        Label.objects.create(case=case, user=admin_user, answer=Label.Answer.CONFIRMED)

        again = make_dataset_dir(tmp_path / "b", n_cases=250, seed=3)
        before = db_state(artifacts)
        with pytest.raises(ImportRejected) as info:
            dataset_import(name="demo", source_dir=again)
        assert info.value.report.problems[0].code == "dataset_exists"
        assert db_state(artifacts) == before

        second = dataset_import(name="demo", source_dir=again, replace=True)
        assert Dataset.objects.get(name="demo").pk == second.pk != first.pk
        assert Case.objects.count() == second.n_cases == 250
        assert not Label.objects.exists()
        assert AuditEvent.objects.filter(verb="dataset.import").count() == 2  # history kept
        assert snapshot_dir_for(second).exists()

    def test_command_imports_a_folder(self, tmp_path):
        folder = make_dataset_dir(tmp_path, n_cases=200)
        call_command("import_dataset", str(folder), name="cmd", no_progress=True)
        assert Dataset.objects.get(name="cmd").n_cases == 200


@pytest.mark.django_db
def test_slice_of_fraud_handbook(tmp_path):
    """The first 20k cases of the real dataset and their customers' events, with their counts."""
    source = shared_dataset("fraud_handbook")
    n = 20_000
    cases = pq.ParquetFile(source / "cases.parquet").iter_batches(batch_size=n).__next__()
    entities = pc.unique(cases["entity_id"])
    events = pq.read_table(
        source / "events.parquet", filters=[("ts", "<=", cases["ts"][-1].as_py())]
    )
    events = events.filter(pc.is_in(events["entity_id"], value_set=entities))
    folder = tmp_path / "fraud_handbook_20k"
    folder.mkdir()
    pq.write_table(pa_table(cases), folder / "cases.parquet")
    pq.write_table(events, folder / "events.parquet")
    (folder / "schema.json").write_text((source / "schema.json").read_text())

    dataset = dataset_import(name="fh-slice", source_dir=folder)
    assert dataset.n_cases == Case.objects.filter(dataset=dataset).count() == n
    assert dataset.n_events == Event.objects.filter(dataset=dataset).count() == events.num_rows
    n_seed = int(pc.sum(cases["seed_positive"]).as_py())
    assert dataset.n_seed_positive == n_seed
    assert dataset.cases.filter(pool_state=PoolState.POSITIVE).count() == n_seed
    snapshot = pq.read_table(snapshot_dir_for(dataset) / "cases.parquet")
    assert snapshot["case_id"].to_pylist() == cases["case_id"].to_pylist()


def pa_table(batch: pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([batch])


@pytest.mark.django_db
def test_snapshot_loads_as_numpy_for_the_learning_side(tmp_path):
    """The snapshot is a dataset folder: ``learning.features.load_dataset`` reads it whole."""
    from labelapp.benchmarks.imports import load_feature_matrix
    from learning.features import load_dataset

    folder = make_dataset_dir(tmp_path, n_cases=N_CASES, seed=2)
    truth = pd.read_parquet(folder / "cases.parquet")
    snapshot = snapshot_dir_for(dataset_import(name="np", source_dir=folder))

    loaded = load_dataset(snapshot)
    assert loaded.n_cases == N_CASES
    assert np.array_equal(loaded.labels, truth["label"].to_numpy())
    assert np.array_equal(loaded.seed_positive, truth["seed_positive"].to_numpy().astype(bool))
    assert set(loaded.numeric_columns) == set(truth.columns[truth.columns.str.contains("_nb_")]) | {
        c for c in truth.columns if "avg_amount" in c or c == "amount"
    }
    matrix, names = load_feature_matrix(snapshot)
    assert matrix.shape == (N_CASES, 14) and matrix.dtype == np.float32
    assert np.allclose(matrix[:, names.index("amount")], truth["amount"].to_numpy())

"""FeatureSpec and build_matrix: one raw input, one matrix, inside and outside the app."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from learning.features import dataset_header, load_dataset
from learning.featurespec import FeatureSpec, build_matrix, embedding_indices


def _cases(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86400, n)), "s")
    return pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "entity_id": [f"e{i % 40}" for i in range(n)],
            "ts": ts,
            "terminal_id": [f"t{v}" for v in rng.integers(0, 5000, n)],
            "channel": rng.choice(["web", "pos", "atm"], n),
            "hour": rng.integers(0, 24, n),
            "amount": rng.gamma(2.0, 30.0, n).round(2),
            "seed_positive": (rng.random(n) < 0.1).astype(int),
        }
    )


def _write(folder, cases: pd.DataFrame, *, csv: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    schema = {"cases": {"numeric": ["amount"], "categorical": ["terminal_id", "channel", "hour"]}}
    (folder / "schema.json").write_text(json.dumps(schema))
    if csv:
        cases.to_csv(folder / "cases.csv", index=False)
    else:
        cases.to_parquet(folder / "cases.parquet", index=False)
    return folder


def test_spec_from_dataset_splits_identifiers_from_tree_categoricals(tmp_path):
    ds = load_dataset(_write(tmp_path / "d", _cases()))
    spec = FeatureSpec.from_dataset(ds)
    assert spec.numeric_columns == ["amount"]
    assert set(spec.categorical_columns) == {"channel", "hour"}
    # ~380 terminals exceed the categorical limit: they feed label-derived counts instead.
    assert spec.label_derived_columns == ["terminal_id", "entity_id"]
    assert spec.feature_names[:3] == ["amount", "channel", "hour"]
    assert "p_terminal_id_7d" in spec.feature_names
    assert spec.categorical_indices == [1, 2]


def test_spec_from_the_header_of_raw_cases_equals_the_loaded_datasets(tmp_path):
    # The app's iteration builds its spec from the cases it holds (dataset_header), not by
    # reading and encoding the snapshot a second time: the spec must come out the same.
    cases = _cases()
    cases.loc[3, "channel"] = None  # missing values are no category
    folder = _write(tmp_path / "d", cases)
    schema = json.loads((folder / "schema.json").read_text())
    loaded = load_dataset(folder)
    header = dataset_header("d", pd.read_parquet(folder / "cases.parquet"), schema)
    assert len(header.cases) == 0
    assert {c: list(v) for c, v in header.categories.items()} == {
        c: list(v) for c, v in loaded.categories.items()
    }
    for kwargs in ({}, {"label_derived": False, "entity_deviation": False}):
        assert FeatureSpec.from_dataset(header, **kwargs) == FeatureSpec.from_dataset(
            loaded, **kwargs
        )


def test_json_round_trip_keeps_the_spec(tmp_path):
    spec = FeatureSpec.from_dataset(load_dataset(_write(tmp_path / "d", _cases())))
    spec.embedding_dim, spec.sequence_length = 8, 64
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec
    assert again.feature_names == spec.feature_names


def test_a_subset_of_the_encoder_columns_round_trips_and_old_specs_still_read(tmp_path):
    spec = FeatureSpec(numeric_columns=["a"], embedding_dim=5, embedding_columns=[3, 4])
    assert spec.feature_names == ["a", "emb_3", "emb_4"] and spec.version == 3
    assert embedding_indices(spec) == [1, 2]
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec and again.used_embedding_columns == [3, 4]
    # Without a subset the file has no such key: scorers that predate it read it.
    whole = FeatureSpec(numeric_columns=["a"], embedding_dim=2)
    assert "embedding_columns" not in json.loads(whole.to_json())
    assert whole.used_embedding_columns == [0, 1] and whole.version == 1
    cases = pd.DataFrame({"a": [1.0, 2.0]})
    emb = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(build_matrix(spec, cases, embeddings=emb)[:, 1:], emb[:, 3:])
    with pytest.raises(ValueError, match="embeddings have shape"):
        build_matrix(spec, cases, embeddings=emb[:, 3:])  # the whole vector is given
    header = load_dataset(_write(tmp_path / "d", _cases()))
    for bad in ([5], [1, 1], []):
        with pytest.raises(ValueError, match="embedding columns"):
            FeatureSpec.from_dataset(header, embedding_dim=5, embedding_columns=bad)


def test_matrix_codes_match_load_dataset_and_csv_equals_parquet(tmp_path):
    cases = _cases()
    ds = load_dataset(_write(tmp_path / "d", cases))
    spec = FeatureSpec.from_dataset(ds)
    positives = cases.loc[cases.seed_positive == 1, spec.positive_columns]
    X = build_matrix(spec, cases, positives=positives)
    assert X.dtype == np.float32 and X.shape == (len(cases), len(spec.feature_names))
    # Categorical codes are load_dataset's codes.
    for name in spec.categorical_columns:
        j = spec.feature_names.index(name)
        np.testing.assert_array_equal(X[:, j], ds.cases[name].to_numpy())
    # The same cases read back from CSV (ints, strings, timestamps re-parsed) give the same matrix.
    csv_cases = pd.read_csv(_write(tmp_path / "csv", cases, csv=True) / "cases.csv")
    X_csv = build_matrix(spec, csv_cases, positives=positives)
    np.testing.assert_array_equal(X, X_csv)


def test_label_derived_counts_only_earlier_positives_of_the_same_value():
    spec = FeatureSpec(
        numeric_columns=["amount"],
        label_derived_columns=["terminal_id"],
        label_derived_windows_days=[1.0, 7.0],
    )
    t0 = pd.Timestamp("2024-03-01")
    cases = pd.DataFrame(
        {
            "amount": [1.0, 2.0, 3.0, 4.0],
            "terminal_id": ["a", "a", "a", "b"],
            "ts": [t0, t0 + pd.Timedelta("2h"), t0 + pd.Timedelta("3D"), t0 + pd.Timedelta("3D")],
        }
    )
    positives = cases.iloc[[0]][["ts", "terminal_id"]]  # one known positive: case 0 on "a"
    X = build_matrix(spec, cases, positives=positives)
    one_day, seven_days = X[:, 1], X[:, 2]
    np.testing.assert_array_equal(one_day, [0, 1, 0, 0])  # case 0 never counts itself
    np.testing.assert_array_equal(seven_days, [0, 1, 1, 0])  # terminal "b" has none


def test_unknown_categories_become_minus_one_and_embeddings_are_appended():
    spec = FeatureSpec(categorical_columns={"channel": ["atm", "pos"]}, embedding_dim=2)
    cases = pd.DataFrame({"channel": ["pos", "web", None]})
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    X = build_matrix(spec, cases, embeddings=emb)
    np.testing.assert_array_equal(X[:, 0], [1, -1, -1])
    np.testing.assert_array_equal(X[:, 1:], emb)
    with pytest.raises(ValueError, match="embeddings"):
        build_matrix(spec, cases)


def test_missing_inputs_are_refused():
    spec = FeatureSpec(numeric_columns=["amount"], label_derived_columns=["terminal_id"])
    cases = pd.DataFrame({"amount": [1.0], "terminal_id": ["a"], "ts": [pd.Timestamp("2024")]})
    with pytest.raises(ValueError, match="positives"):
        build_matrix(spec, cases)
    with pytest.raises(ValueError, match="lack columns"):
        build_matrix(spec, cases.drop(columns=["amount"]), positives=cases.iloc[:0])


def test_entity_deviation_columns_join_the_matrix_and_can_be_passed_precomputed(tmp_path):
    cases = _cases()
    spec = FeatureSpec.from_dataset(load_dataset(_write(tmp_path / "d", cases)))
    assert spec.deviation_columns == ["amount"]
    assert spec.feature_names[3] == "dev_amount"
    positives = cases.loc[cases.seed_positive == 1, spec.positive_columns]
    X = build_matrix(spec, cases, positives=positives)
    dev = X[:, 3]
    # The first case of every entity has no earlier mean; the rest divide by it.
    first = ~cases.duplicated("entity_id")
    assert np.isnan(dev[first.to_numpy()]).all()
    i = int(np.flatnonzero(~first.to_numpy())[5])
    earlier = cases[(cases.entity_id == cases.entity_id[i]) & (cases.ts < cases.ts[i])]
    assert dev[i] == pytest.approx(cases.amount[i] / earlier.amount.mean(), rel=1e-5)
    # A chunk scored apart from its entities' history gets the same rows when given them.
    chunk = slice(300, 400)
    again = build_matrix(
        spec, cases.iloc[chunk], positives=positives, deviation=X[chunk, 3:4].copy()
    )
    np.testing.assert_array_equal(again, X[chunk])


def test_specs_without_deviation_stay_version_1_and_with_it_are_version_2():
    plain = json.loads(FeatureSpec(numeric_columns=["amount"]).to_json())
    assert plain["version"] == 1 and "deviation_columns" not in plain  # as before the feature
    spec = FeatureSpec.from_json(json.dumps(plain))
    assert spec.deviation_columns == [] and spec.feature_names == ["amount"]
    with_dev = FeatureSpec(numeric_columns=["amount"], deviation_columns=["amount"])
    assert json.loads(with_dev.to_json())["version"] == 2
    assert FeatureSpec.from_json(with_dev.to_json()) == with_dev


def test_saved_spec_keeps_the_matrix_column_order(tmp_path):
    """Categorical columns out of alphabetical order come back in the order the model has them
    (a spec written with sorted keys swapped is_weekend and is_night in fraud_handbook's bundle)."""

    spec = FeatureSpec(
        numeric_columns=["amount"],
        categorical_columns={"hour": [0, 1, 2], "is_weekend": [0, 1], "is_night": [0, 1]},
    )
    loaded = FeatureSpec.load(spec.save(tmp_path / "spec.json"))
    assert (
        loaded.feature_names == spec.feature_names == ["amount", "hour", "is_weekend", "is_night"]
    )
    cases = pd.DataFrame(
        {"amount": [1.0, 2.0], "hour": [0, 2], "is_weekend": [1, 0], "is_night": [0, 0]}
    )
    np.testing.assert_array_equal(build_matrix(loaded, cases), build_matrix(spec, cases))


def test_a_few_cases_count_the_same_against_the_positives_sharing_their_values(monkeypatch):
    """The case page's one-row matrix cuts the positives to those sharing a value with the case
    (learning.featurespec.FEW_CASES): the counts are those of the whole positives frame."""
    import learning.featurespec as featurespec

    cases = _cases(n=400, seed=3)
    cases["terminal_id"] = [f"t{v}" for v in np.random.default_rng(1).integers(0, 12, 400)]
    cases.loc[cases.index[::7], "terminal_id"] = None  # missing values are a value of their own
    spec = FeatureSpec(
        numeric_columns=["amount"],
        label_derived_columns=["terminal_id", "entity_id"],
        label_derived_windows_days=[1.0, 7.0],
    )
    positive = np.random.default_rng(0).random(len(cases)) < 0.3
    positives = cases.loc[positive, spec.positive_columns].reset_index(drop=True)
    rows = [5, 7, 100, 399]
    monkeypatch.setattr(featurespec, "FEW_CASES", 10)  # the 400 cases: the whole frame
    cut = build_matrix(spec, cases.iloc[rows], positives=positives)
    whole = build_matrix(spec, cases, positives=positives)[rows]
    assert whole[:, 1:].sum() > 0  # the counts are not all zero
    np.testing.assert_array_equal(cut, whole)


def test_deviation_columns_are_kept_beside_the_snapshot_and_recomputed_when_stale(tmp_path):
    from learning.featurespec import deviation_matrix, deviation_matrix_cached

    cases = _cases()
    spec = FeatureSpec.from_dataset(load_dataset(_write(tmp_path / "d", cases)))
    first, path = deviation_matrix_cached(spec, cases, tmp_path / "derived")
    assert path.exists() and path.parent == tmp_path / "derived"
    again, same = deviation_matrix_cached(spec, cases, tmp_path / "derived")
    assert same == path and isinstance(again, np.memmap)  # read back, not recomputed
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(first, deviation_matrix(spec, cases))
    np.save(path, np.zeros((3, 1), dtype=np.float32))  # another dataset's rows: recomputed
    fresh, _ = deviation_matrix_cached(spec, cases, tmp_path / "derived")
    np.testing.assert_array_equal(fresh, first)

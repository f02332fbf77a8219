"""Export bundles: sealed zips that score outside the app, and refuse any changed byte."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learning.bundle import (
    MANIFEST,
    REQUIRED_FILES,
    BundleError,
    extract_bundle,
    read_bundle,
    verify_bundle,
    verify_dir,
    write_bundle,
)
from learning.features import load_dataset
from learning.featurespec import FeatureSpec, build_matrix
from learning.pu import TwoStepPU
from learning.score import ScoringError, ScoringModel

REPO_ROOT = Path(__file__).resolve().parents[2]


def synthetic_cases(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Cases with numeric, low- and high-cardinality categorical columns and planted positives."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86400, n)), "s")
    truth = rng.random(n) < 0.12
    amount = rng.gamma(2.0, 30.0, n) + truth * 80.0
    return pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "entity_id": [f"e{i % 50}" for i in range(n)],
            "ts": ts,
            "terminal_id": np.where(truth, "t-bad", [f"t{v}" for v in rng.integers(0, 800, n)]),
            "channel": rng.choice(["web", "pos", "atm"], n),
            "amount": amount.round(2),
            "seed_positive": (truth & (rng.random(n) < 0.5)).astype(int),
        }
    )


def train_model_dir(folder: Path, cases: pd.DataFrame) -> Path:
    """A model folder laid out like a model version's artifacts (see HELPERS.md)."""
    data = folder / "data"
    data.mkdir(parents=True)
    schema = {"cases": {"numeric": ["amount"], "categorical": ["terminal_id", "channel"]}}
    (data / "schema.json").write_text(json.dumps(schema))
    cases.to_parquet(data / "cases.parquet", index=False)
    spec = FeatureSpec.from_dataset(load_dataset(data), windows_days=(7.0, 28.0))
    positives = cases.loc[cases["seed_positive"] == 1, spec.positive_columns]
    X = build_matrix(spec, cases, positives=positives)
    model = TwoStepPU(
        n_estimators=30,
        em_rounds_step1=1,
        em_rounds_step2=1,
        categorical_features=spec.categorical_indices,
        random_state=0,
    )
    model.fit(X, cases["seed_positive"].to_numpy())
    out = folder / "model"
    out.mkdir()
    model.booster_.save_model(str(out / "model.txt"))
    spec.save(out / "feature_spec.json")
    positives.to_parquet(out / "positives.parquet", index=False)
    (out / "params.json").write_text(json.dumps(model.get_params(), default=str))
    (out / "metrics.json").write_text(json.dumps({"n_train": len(cases)}))
    return out


def bundle_files(model_dir: Path) -> dict[str, Path | str]:
    files: dict[str, Path | str] = {p.name: p for p in model_dir.iterdir()}
    files["model_card.md"] = "# Model card\n\nSynthetic test model.\n"
    return files


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle")
    cases = synthetic_cases()
    model_dir = train_model_dir(folder, cases)
    bundle = folder / "model.zip"
    write_bundle(bundle, bundle_files(model_dir), info={"model_version": 7})
    return {"folder": folder, "cases": cases, "model_dir": model_dir, "bundle": bundle}


# -- the format ------------------------------------------------------------------------------------
def small_files() -> dict[str, bytes]:
    return {name: f"contents of {name}\n".encode() * 40 for name in REQUIRED_FILES}


def test_round_trip_keeps_every_file_and_lists_its_hash(tmp_path):
    files = small_files()
    manifest = write_bundle(tmp_path / "b.zip", files, info={"model_version": 3})
    again, contents = read_bundle(tmp_path / "b.zip")
    assert {n: b for n, b in contents.items() if n != MANIFEST} == files
    assert again.files == manifest.files
    assert again.info["model_version"] == 3
    assert set(manifest.files) == set(files)
    assert all(len(entry["sha256"]) == 64 for entry in manifest.files.values())


def test_same_inputs_give_the_same_bytes(tmp_path):
    info = {"created_at": "2026-01-01T00:00:00+00:00"}
    write_bundle(tmp_path / "a.zip", small_files(), info=info)
    write_bundle(tmp_path / "b.zip", small_files(), info=info)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_any_single_changed_byte_is_refused(tmp_path):
    write_bundle(tmp_path / "b.zip", small_files())
    data = (tmp_path / "b.zip").read_bytes()
    tampered = tmp_path / "t.zip"
    # Every byte of the archive: headers, compressed data, central directory, end record, seal.
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 0x01
        tampered.write_bytes(bytes(changed))
        with pytest.raises(BundleError):
            verify_bundle(tampered)


def _rezip(source: Path, target: Path, change) -> None:
    """Rewrite a bundle as a valid zip (fresh CRCs) after ``change(name, data) -> data``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for member in src.infolist():
            data = change(member.filename, src.read(member.filename))
            if data is not None:
                dst.writestr(member.filename, data)


def test_a_changed_file_in_a_valid_zip_is_named(tmp_path):
    write_bundle(tmp_path / "b.zip", small_files())

    def flip(name, data):
        return data.replace(b"contents", b"Contents", 1) if name == "model.txt" else data

    _rezip(tmp_path / "b.zip", tmp_path / "t.zip", flip)
    with pytest.raises(BundleError, match="model.txt: SHA-256 mismatch"):
        verify_bundle(tmp_path / "t.zip")


def test_a_rewritten_manifest_breaks_the_seal(tmp_path):
    write_bundle(tmp_path / "b.zip", small_files())

    def forge(name, data):
        if name == "model.txt":
            return b"forged model"
        if name == MANIFEST:
            manifest = json.loads(data)
            manifest["files"]["model.txt"] = {
                "sha256": __import__("hashlib").sha256(b"forged model").hexdigest(),
                "size": 12,
            }
            return json.dumps(manifest).encode()
        return data

    _rezip(tmp_path / "b.zip", tmp_path / "t.zip", forge)
    with pytest.raises(BundleError, match="seal|end record"):
        verify_bundle(tmp_path / "t.zip")


def test_missing_and_unlisted_files_are_refused(tmp_path):
    write_bundle(tmp_path / "b.zip", small_files())
    _rezip(tmp_path / "b.zip", tmp_path / "m.zip", lambda n, d: None if n == "params.json" else d)
    with pytest.raises(BundleError, match="missing from the bundle: params.json"):
        verify_bundle(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "b.zip") as src, zipfile.ZipFile(tmp_path / "x.zip", "w") as z:
        for member in src.infolist():
            z.writestr(member.filename, src.read(member.filename))
        z.writestr("extra.py", b"print('hi')")
    with pytest.raises(BundleError, match="not listed in the manifest: extra.py"):
        verify_bundle(tmp_path / "x.zip")


def test_not_a_bundle_is_refused_clearly(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a readable zip archive"):
        verify_bundle(tmp_path / "junk.zip")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("hello.txt", b"hi")
    (tmp_path / "plain.zip").write_bytes(buffer.getvalue())
    with pytest.raises(BundleError, match="not a model bundle"):
        verify_bundle(tmp_path / "plain.zip")


def test_unpacked_folder_is_checked_against_its_manifest(tmp_path):
    write_bundle(tmp_path / "b.zip", small_files())
    extract_bundle(tmp_path / "b.zip", tmp_path / "out")
    verify_dir(tmp_path / "out")
    (tmp_path / "out" / "metrics.json").write_bytes(b"{}")
    with pytest.raises(BundleError, match="metrics.json: SHA-256 mismatch"):
        verify_dir(tmp_path / "out")


def test_writer_refuses_incomplete_or_odd_members(tmp_path):
    files = small_files()
    del files["model_card.md"]
    with pytest.raises(ValueError, match="model_card.md"):
        write_bundle(tmp_path / "b.zip", files)
    with pytest.raises(ValueError, match="invalid bundle member"):
        write_bundle(tmp_path / "b.zip", {**small_files(), "../evil": b""})


# -- the standalone scorer -------------------------------------------------------------------------
def test_scores_outside_equal_scores_inside(trained, tmp_path):
    cases = trained["cases"]
    inside = ScoringModel.from_dir(trained["model_dir"]).score(cases)
    cases_file = tmp_path / "cases.csv"
    cases.drop(columns=["seed_positive"]).to_csv(cases_file, index=False)
    out = tmp_path / "scores.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "learning.score",
            str(trained["bundle"]),
            "--cases",
            str(cases_file),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    outside = pd.read_csv(out)
    assert outside["case_id"].tolist() == cases["case_id"].tolist()
    np.testing.assert_allclose(outside["score"].to_numpy(), inside, rtol=0, atol=1e-6)
    # The model learned something, so equal scores are not equal constants.
    truth = cases["terminal_id"].eq("t-bad").to_numpy()
    assert inside[truth].mean() > inside[~truth].mean() + 0.2


def test_scorer_refuses_a_tampered_bundle_with_a_clear_error(trained, tmp_path):
    data = bytearray(trained["bundle"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(bytes(data))
    trained["cases"].to_parquet(tmp_path / "cases.parquet", index=False)
    out = tmp_path / "scores.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "learning.score",
            str(tampered),
            "--cases",
            str(tmp_path / "cases.parquet"),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "bundle refused" in run.stderr and ("tampered" in run.stderr or "changed" in run.stderr)
    assert not out.exists()


def test_scorer_says_which_columns_are_missing(trained):
    model = ScoringModel.from_dir(trained["model_dir"])
    with pytest.raises(ScoringError, match="amount"):
        model.score(trained["cases"].drop(columns=["amount"]))


def test_contributions_sum_to_the_log_odds(trained):
    model = ScoringModel.from_dir(trained["model_dir"])
    cases = trained["cases"].head(20)
    contributions = model.contributions(cases)
    assert contributions.shape == (20, len(model.spec.feature_names) + 1)
    log_odds = np.log(model.score(cases) / (1 - model.score(cases)))
    np.testing.assert_allclose(contributions.sum(axis=1), log_odds, atol=1e-6)


def test_scorer_runs_without_django():
    code = (
        "import sys, learning.score, learning.bundle\n"
        "bad = [m for m in ('django', 'labelapp', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)

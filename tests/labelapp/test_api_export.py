"""The whole path through the API: import, an iteration of the real loop, download the model, and
score outside the app with the standalone scorer: the same scores as the app's (within 1e-6)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command

from labelapp.models import AuditEvent, Case, Iteration
from labelapp.services.pipeline import iteration_execute
from learning.bundle import MANIFEST, verify_bundle
from learning.knn_feature import KNN_FEATURE
from tests.labelapp.api_fixtures import *  # noqa: F403
from tests.labelapp.api_fixtures import api_client_for
from tests.labelapp.factories import make_dataset_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = {"batch_size": 10, "n_clusters": 2, "pool_size": 40, "n_estimators": 30}


def _upload(client, folder: Path, name: str):
    with (
        open(folder / "cases.parquet", "rb") as cases,
        open(folder / "events.parquet", "rb") as events,
        open(folder / "schema.json", "rb") as schema,
    ):
        return client.post(
            "/api/datasets/import/",
            {"name": name, "cases": cases, "events": events, "schema": schema},
            format="multipart",
        )


def _run_iteration(client, name: str, **params) -> Iteration:
    """Launch through the API, then run the pipeline here (no worker in these tests)."""
    response = client.post(f"/api/datasets/{name}/iterations/", {**FAST, **params}, format="json")
    assert response.status_code == 201, response.json()
    iteration_id = response.json()["id"]
    result = iteration_execute(iteration_id=iteration_id)
    iteration = Iteration.objects.get(pk=iteration_id)
    assert result["status"] == "done", iteration.log
    status = client.get(f"/api/iterations/{iteration_id}/").json()
    assert status["status"] == "done" and status["model_version"] == iteration.model_version_id
    return iteration


def _score_outside(
    bundle: Path, folder: Path, out: Path, *, events: bool
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "learning.score",
        str(bundle),
        "--cases",
        str(folder / "cases.parquet"),
        "--out",
        str(out),
    ]
    if events:
        command += ["--events", str(folder / "events.parquet")]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)


@pytest.fixture
def loop_env(transactional_db, celery_queue, settings, tmp_path, admin_user):
    """A clean artifacts folder, one LightGBM thread, and launches sent to a queue nobody reads."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.UPLOADS_DIR = tmp_path / "uploads"
    settings.LOOP_LIGHTGBM_THREADS = 1
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return api_client_for(admin_user)


@pytest.mark.parametrize("use_embeddings", [False, True], ids=["tabular", "with-encoder"])
def test_bundle_from_the_api_scores_like_the_app(loop_env, tmp_path, use_embeddings):
    client = loop_env
    folder = make_dataset_dir(tmp_path, n_cases=400, seed=3)
    response = _upload(client, folder, "roundtrip")
    assert response.status_code == 201, response.json()
    assert response.json()["n_cases"] == 400
    params = {"use_embeddings": use_embeddings, "encoder_minutes": 0.05}
    iteration = _run_iteration(client, "roundtrip", **params)
    version = iteration.model_version

    response = client.get(f"/api/models/{version.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    bundle = tmp_path / "model.zip"
    bundle.write_bytes(b"".join(response.streaming_content))
    manifest = verify_bundle(bundle)
    names = set(zipfile.ZipFile(bundle).namelist())
    expected = {
        MANIFEST,
        "model.txt",
        "feature_spec.json",
        "params.json",
        "metrics.json",
        "model_card.md",
        "positives.parquet",
    }
    assert expected <= names
    assert ({"encoder.pt", "encoder_config.json"} <= names) == use_embeddings
    assert "inputs.json" not in names and "scores.npy" not in names  # local paths, app state
    assert manifest.info["model_version"] == version.pk
    event = AuditEvent.objects.get(verb="model.export", target_id=str(version.pk))
    assert event.actor.username == "alice-admin" and event.via == "api"

    out = tmp_path / "scores.csv"
    run = _score_outside(bundle, folder, out, events=use_embeddings)
    assert run.returncode == 0, run.stderr
    outside = pd.read_csv(out).set_index("case_id")["score"]
    app = dict(
        Case.objects.with_shown_scores(version.dataset)
        .filter(dataset=version.dataset)
        .values_list("case_id", "score")
    )
    app_scores = np.array([app[c] for c in outside.index])
    np.testing.assert_allclose(outside.to_numpy(), app_scores, rtol=0, atol=1e-6)
    assert app_scores.std() > 0.01  # real, varied scores, not a constant

    # The README's way for a newcomer: export_cases writes a cases file (and the events the
    # sequence model needs), which the scorer takes as it is.
    exported = tmp_path / "exported"
    call_command("export_cases", "--dataset", "roundtrip", "--out", str(exported), "--limit", "50")
    exported_cases = pd.read_parquet(exported / "cases.parquet")
    assert len(exported_cases) == 50 and not {"row", "label"} & set(exported_cases.columns)
    run = _score_outside(bundle, exported, tmp_path / "exported.csv", events=use_embeddings)
    assert run.returncode == 0, run.stderr
    outside = pd.read_csv(tmp_path / "exported.csv").set_index("case_id")["score"]
    np.testing.assert_allclose(outside.to_numpy(), [app[c] for c in outside.index], atol=1e-6)
    if use_embeddings:  # what the README's old example did: refused with a message
        run = _score_outside(bundle, exported, tmp_path / "no-events.csv", events=False)
        assert run.returncode == 2 and "pass the cases' events" in run.stderr

    # The API's scoring endpoint: the same scores for posted cases (and events).
    cases = pd.read_parquet(folder / "cases.parquet").head(25)
    body = {"model_version": version.pk, "cases": _records(cases)}
    if use_embeddings:
        events = pd.read_parquet(folder / "events.parquet")
        body["events"] = _records(events[events["entity_id"].isin(cases["entity_id"])])
    response = client.post("/api/score/", body, format="json")
    assert response.status_code == 200, response.json()
    scored = {s["case_id"]: s["score"] for s in response.json()["scores"]}
    np.testing.assert_allclose(
        [scored[c] for c in cases["case_id"]], [app[c] for c in cases["case_id"]], atol=1e-6
    )


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: times as ISO text, no NaN."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def test_export_command_and_tampered_bundle(loop_env, tmp_path):
    client = loop_env
    folder = make_dataset_dir(tmp_path, n_cases=300, seed=4)
    assert _upload(client, folder, "cmd").status_code == 201
    version = _run_iteration(client, "cmd", use_embeddings=False).model_version

    bundle = tmp_path / "cmd.zip"
    call_command("export_model", "--version", str(version.pk), "--out", str(bundle))
    verify_bundle(bundle)
    event = AuditEvent.objects.get(verb="model.export", target_id=str(version.pk))
    assert event.via == "command"
    card = zipfile.ZipFile(bundle).read("model_card.md").decode()
    for heading in (
        "## Data",
        "## Iterations",
        "## Labels used",
        "## Measured performance",
        "## Known limits",
    ):
        assert heading in card
    assert "cmd" in card and "seed positives" in card

    data = bytearray(bundle.read_bytes())
    data[len(data) // 3] ^= 0x01  # one changed bit
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(bytes(data))
    run = _score_outside(tampered, folder, tmp_path / "s.csv", events=False)
    assert run.returncode == 2
    assert "bundle refused" in run.stderr
    assert not (tmp_path / "s.csv").exists()

    with pytest.raises(Exception, match="no model version 999999"):
        call_command("export_model", "--version", "999999", "--out", str(tmp_path / "x.zip"))


def test_knn_feature_bundle_needs_the_column_and_then_scores_like_the_app(loop_env, tmp_path):
    """Launched by the command with --knn-feature: the bundle says the caller supplies the
    column, the scorer refuses cases without it, and with it scores equal the app's."""
    client = loop_env
    folder = make_dataset_dir(tmp_path, n_cases=400, seed=3)
    assert _upload(client, folder, "knn").status_code == 201
    bad = client.post("/api/datasets/knn/iterations/", {"knn_feature": "maybe"}, format="json")
    assert bad.status_code == 400 and "knn_feature" in str(bad.json())
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    call_command(
        "run_iteration", "--dataset", "knn", "--knn-feature=on", "--use-embeddings=off", *flags
    )
    iteration = Iteration.objects.get(dataset__name="knn")
    assert iteration.params["knn_feature"] is True
    assert iteration_execute(iteration_id=iteration.pk)["status"] == "done", iteration.log
    version = Iteration.objects.get(pk=iteration.pk).model_version
    assert version.feature_names[-1] == KNN_FEATURE

    bundle = tmp_path / "knn.zip"
    call_command("export_model", "--version", str(version.pk), "--out", str(bundle))
    manifest = verify_bundle(bundle)
    assert KNN_FEATURE in manifest.info["caller_supplies"]
    card = zipfile.ZipFile(bundle).read("model_card.md").decode()
    assert f"cases must carry a {KNN_FEATURE} column" in card

    run = _score_outside(bundle, folder, tmp_path / "s.csv", events=False)
    assert run.returncode == 2 and KNN_FEATURE in run.stderr and "nearest" in run.stderr
    assert not (tmp_path / "s.csv").exists()

    # The caller supplies the column (here: the values the app trained with, by row).
    cases = pd.read_parquet(folder / "cases.parquet")
    rows = dict(Case.objects.filter(dataset=version.dataset).values_list("case_id", "row"))
    share = np.load(Path(version.artifact_dir) / "knn_feature.npy")
    supplied = tmp_path / "supplied"
    supplied.mkdir()
    cases.assign(**{KNN_FEATURE: share[cases["case_id"].map(rows)]}).to_parquet(
        supplied / "cases.parquet", index=False
    )
    out = tmp_path / "scores.csv"
    run = _score_outside(bundle, supplied, out, events=False)
    assert run.returncode == 0, run.stderr
    outside = pd.read_csv(out).set_index("case_id")["score"]
    app = dict(
        Case.objects.with_shown_scores(version.dataset)
        .filter(dataset=version.dataset)
        .values_list("case_id", "score")
    )
    np.testing.assert_allclose(outside.to_numpy(), [app[c] for c in outside.index], atol=1e-6)

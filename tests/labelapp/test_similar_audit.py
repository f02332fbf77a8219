"""Similar cases and the label-noise audit in the app: index per model version, the case page's
panel, "more like this", flags with reasons, and a second look stored beside the first answer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from django.db import connections
from django.urls import reverse

from labelapp.models import BatchItem, Case, Label, ModelVersion, NoiseFlag, PoolState
from labelapp.selectors.similar import neighbor_dir, similar_cases
from labelapp.services.audit_noise import noise_audit_run
from labelapp.services.labels import label_create
from labelapp.services.similar import (
    batch_more_like_this,
    neighbor_build_lock,
    neighbor_index_build,
)
from learning.neighbors import neighbor_matrix
from tests.labelapp.conftest import wait_for
from tests.labelapp.factories import make_batch, make_vector_dataset

SEEDS = list(range(60))  # true positives the rule caught
PLANTED = list(range(1000, 1010))  # plain negatives wrongly marked positive
CONFIRMED = list(range(60, 65))
NOT_CONFIRMED = list(range(1500, 1505))


def vectors(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Four features; rows 0-149 (the true positives) sit apart, shifted by +3."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:150] += 3.0
    return X


@pytest.fixture
def vector_data(db, tmp_path, settings):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    X = vectors()
    states = {r: PoolState.CONFIRMED for r in CONFIRMED}
    states.update({r: PoolState.NOT_CONFIRMED for r in NOT_CONFIRMED})
    dataset = make_vector_dataset("vec", tmp_path / "snapshots", X, SEEDS + PLANTED, states=states)
    artifact_dir = tmp_path / "artifacts" / "models" / "v1"
    artifact_dir.mkdir(parents=True)
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir=str(artifact_dir))
    dataset.current_model = version
    dataset.save(update_fields=["current_model"])
    return dataset, version, X


def test_similar_panel_lists_the_truly_nearest_positives_and_not_confirmed(vector_data):
    dataset, version, X = vector_data
    space = neighbor_index_build(model_version=version)
    assert space["method"] == "exact" and space["n_cases"] == len(X)
    assert (neighbor_dir(version) / "neighbors.json").exists()

    case = Case.objects.get(dataset=dataset, row=100)
    panel = similar_cases(case, k=3)
    M, _ = neighbor_matrix(None, X)
    positives = np.array(SEEDS + PLANTED + CONFIRMED)
    d = np.linalg.norm(M[positives] - M[100], axis=1)
    assert [s.case.row for s in panel.confirmed] == positives[np.argsort(d)[:3]].tolist()
    np.testing.assert_allclose([s.distance for s in panel.confirmed], np.sort(d)[:3], rtol=1e-4)
    nc = np.array(NOT_CONFIRMED)
    d_nc = np.linalg.norm(M[nc] - M[100], axis=1)
    assert [s.case.row for s in panel.not_confirmed] == nc[np.argsort(d_nc)[:3]].tolist()
    assert {name for name, _ in panel.confirmed[0].differs} <= {"x0", "x1", "x2", "x3"}
    # Inside the positive cluster most neighbours are known positives; far from it, none.
    assert panel.knn_score >= 0.3
    far = similar_cases(Case.objects.get(dataset=dataset, row=1800), k=3)
    assert far.knn_score <= 0.1


def test_a_child_version_on_the_same_space_reuses_its_parents_index(vector_data, tmp_path):
    dataset, first, X = vector_data
    built = neighbor_index_build(model_version=first)
    assert built["reused_from"] is None

    def child(name: str, parent: ModelVersion, embeddings: np.ndarray | None = None):
        folder = tmp_path / "artifacts" / "models" / name
        folder.mkdir(parents=True)
        if embeddings is not None:
            np.save(folder / "embeddings.npy", embeddings)
            (folder / "inputs.json").write_text(
                json.dumps({"embeddings": str(folder / "embeddings.npy")})
            )
        return ModelVersion.objects.create(dataset=dataset, artifact_dir=str(folder), parent=parent)

    # Same data, no embeddings: the parent's files are linked, not built again.
    second = child("v2", first)
    reused = neighbor_index_build(model_version=second)
    assert reused["reused_from"] == first.pk
    assert reused["matrix_sha256"] == built["matrix_sha256"]
    for f in (neighbor_dir(first)).iterdir():
        if f.name != "space.json":
            assert (neighbor_dir(second) / f.name).stat().st_ino == f.stat().st_ino
    dataset.current_model = second
    dataset.save(update_fields=["current_model"])
    case = Case.objects.get(dataset=dataset, row=100)
    M, _ = neighbor_matrix(None, X)
    positives = np.array(SEEDS + PLANTED + CONFIRMED)
    nearest = positives[np.argsort(np.linalg.norm(M[positives] - M[100], axis=1))[:3]]
    assert [s.case.row for s in similar_cases(case, k=3).confirmed] == nearest.tolist()

    # New embeddings make a new space: built from scratch.
    emb = np.random.default_rng(1).normal(size=(len(X), 8)).astype(np.float32)
    third = child("v3", second, embeddings=emb)
    rebuilt = neighbor_index_build(model_version=third)
    assert rebuilt["reused_from"] is None and rebuilt["embedding_dim"] == 8
    assert rebuilt["matrix_sha256"] != built["matrix_sha256"]


def test_a_child_waits_for_its_parents_index_in_progress_then_links_it(
    transactional_db, vector_data, tmp_path
):
    """With two workers the next iteration can end while its parent's index is still being
    built: the child's build waits for the dataset's build lock instead of building it again."""
    dataset, first, _ = vector_data
    neighbor_index_build(model_version=first)
    folder = tmp_path / "artifacts" / "models" / "v2"
    folder.mkdir(parents=True)
    second = ModelVersion.objects.create(dataset=dataset, artifact_dir=str(folder), parent=first)
    parked = neighbor_dir(first).with_name("parked")
    neighbor_dir(first).rename(parked)  # the parent's index is not published yet
    got: dict = {}

    def build_child() -> None:
        try:
            got["space"] = neighbor_index_build(model_version=second)
        finally:
            connections.close_all()

    with neighbor_build_lock(dataset.pk):  # held by the parent's (unfinished) build
        child = threading.Thread(target=build_child)
        child.start()
        child.join(timeout=1.0)
        assert child.is_alive(), "the child's build did not wait for the lock"
        parked.rename(neighbor_dir(first))  # the parent's build publishes its index
    child.join(timeout=60)
    assert got["space"]["reused_from"] == first.pk


def test_similar_fragment_permissions_and_content(vector_data, expert_client, outsider_client):
    dataset, version, _ = vector_data
    case = Case.objects.get(dataset=dataset, row=100)
    url = reverse("case-similar", args=[case.pk])
    # Only the case page's rule lets an expert see the panel: the case must be theirs.
    assert expert_client.get(url).status_code == 403
    make_batch(dataset, cases=[case])
    assert expert_client.get(reverse("case-detail", args=[case.pk])).status_code == 200
    assert "not built yet" in expert_client.get(url).content.decode()
    neighbor_index_build(model_version=version)
    page = expert_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "kNN score" in page and "Nearest known positives" in page
    first = similar_cases(case, k=5).confirmed[0].case.case_id
    assert first in page
    assert "More like this" not in page  # an admin action
    assert outsider_client.get(url).status_code == 403


def test_more_like_this_adds_the_nearest_offerable_cases_to_the_batch(
    vector_data, admin_client, expert_client
):
    dataset, version, X = vector_data
    neighbor_index_build(model_version=version)
    case = Case.objects.get(dataset=dataset, row=1200)
    url = reverse("case-more-like-this", args=[case.pk])
    assert expert_client.post(url, {"size": 5}).status_code == 403
    response = admin_client.post(url, {"size": 5})
    assert response.status_code == 302
    items = list(BatchItem.objects.filter(iteration__dataset=dataset).select_related("case"))
    assert len(items) == 5 and all("more like v01200" in i.reason for i in items)
    M, _ = neighbor_matrix(None, X)
    offerable = np.array(
        [r for r in range(len(X)) if r != 1200 and r not in SEEDS + PLANTED + CONFIRMED]
    )
    offerable = offerable[~np.isin(offerable, NOT_CONFIRMED)]
    nearest = offerable[np.argsort(np.linalg.norm(M[offerable] - M[1200], axis=1))[:5]]
    assert sorted(i.case.row for i in items) == sorted(nearest.tolist())
    assert all(i.case.pool_state == PoolState.SHOWN for i in items)
    # A second call does not offer the same cases twice.
    _, more = batch_more_like_this(user=None, case=case, size=5)
    assert not {i.case_id for i in more} & {i.case_id for i in items}


def test_audit_flags_the_planted_wrong_positives_with_reasons(vector_data, admin_client):
    dataset, version, _ = vector_data
    neighbor_index_build(model_version=version)
    summary = noise_audit_run(dataset=dataset)
    flags = {f.case.row: f for f in NoiseFlag.objects.filter(dataset=dataset)}
    assert summary["flags"] == len(flags)
    assert len(set(flags) & set(PLANTED)) >= 9
    assert len(set(flags) - set(PLANTED)) <= 8
    planted = [flags[r] for r in PLANTED if r in flags]
    assert all(f.kind == "seed" and f.reasons and f.methods for f in planted)
    assert any("nearest neighbours are confidently clean" in " ".join(f.reasons) for f in planted)
    page = admin_client.get(reverse("label-audit", args=[dataset.name])).content.decode()
    assert planted[0].case.case_id in page and "out-of-fold score" in page
    # A re-run replaces open flags instead of piling them up.
    noise_audit_run(dataset=dataset)
    assert NoiseFlag.objects.filter(dataset=dataset).count() == summary["flags"]


def test_second_look_is_recorded_beside_the_first_answer(
    vector_data, admin_client, expert_user, second_expert
):
    from django.test import Client

    dataset, _, _ = vector_data
    case = Case.objects.get(dataset=dataset, row=70)
    (item,) = make_batch(dataset, cases=[case])
    first = label_create(user=expert_user, case=case, answer="confirmed", batch_item=item)
    flag = NoiseFlag.objects.create(
        dataset=dataset,
        case=case,
        kind="answer",
        methods=["confident_learning"],
        reasons=["out-of-fold score 0.001 is at or below the unlabeled cases' mean"],
        suspicion=0.9,
    )
    send = reverse("label-audit-send", args=[dataset.name])
    # The expert who gave the first answer cannot give the second look.
    admin_client.post(send, {"flag": [flag.pk], "reviewer": expert_user.pk})
    flag.refresh_from_db()
    assert flag.status == NoiseFlag.Status.OPEN
    admin_client.post(send, {"flag": [flag.pk], "reviewer": second_expert.pk})
    flag.refresh_from_db()
    assert flag.status == NoiseFlag.Status.SENT and flag.reviewer == second_expert
    assert flag.review_item.required_answers == 2
    assert flag.review_item.assigned_to == second_expert

    bob = Client()
    bob.force_login(second_expert)
    assert flag.case.case_id in bob.get(reverse("label-audit-reviews")).content.decode()
    response = bob.post(
        reverse("label-audit-review", args=[flag.pk]),
        {"answer": "not_confirmed", "comment": "normal spending for this customer"},
    )
    assert response.status_code == 302
    labels = list(Label.objects.filter(case=case).order_by("id"))
    assert len(labels) == 2
    assert labels[0].pk == first.pk
    assert (labels[0].user, labels[0].answer, labels[0].review_round, labels[0].via) == (
        expert_user,
        "confirmed",
        1,
        "page",
    )
    assert (labels[1].user, labels[1].answer, labels[1].review_round, labels[1].via) == (
        second_expert,
        "not_confirmed",
        2,
        "review",
    )
    flag.refresh_from_db()
    assert flag.status == NoiseFlag.Status.REVIEWED
    page = admin_client.get(reverse("label-audit", args=[dataset.name])).content.decode()
    assert 'id="n-pairs">1<' in page and 'id="kappa">0.00<' in page


def test_second_look_on_a_seed_positive_is_round_two(vector_data, expert_user, admin_user):
    from labelapp.services.audit_noise import noise_flags_send_for_review, noise_review_answer

    dataset, _, _ = vector_data
    case = Case.objects.get(dataset=dataset, row=PLANTED[0])
    flag = NoiseFlag.objects.create(
        dataset=dataset, case=case, kind="seed", methods=["near_clean"], reasons=["r"]
    )
    sent, _ = noise_flags_send_for_review(user=admin_user, flags=[flag], reviewer=expert_user)
    assert sent == 1
    flag.refresh_from_db()
    label = noise_review_answer(user=expert_user, flag=flag, answer="not_confirmed")
    assert (label.via, label.review_round, label.batch_item_id) == (
        "review",
        2,
        flag.review_item_id,
    )
    case.refresh_from_db()
    assert case.pool_state == PoolState.NOT_CONFIRMED


@pytest.mark.worker
def test_worker_builds_the_neighbor_index_of_a_model_version(
    celery_worker, celery_queue, tmp_path, settings
):
    from labelapp.tasks.neighbors import neighbor_index_build_task

    X = vectors(500)
    dataset = make_vector_dataset("vecw", tmp_path / "snapshots", X, SEEDS)
    artifact_dir = tmp_path / "models" / "v1"
    artifact_dir.mkdir(parents=True)
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir=str(artifact_dir))
    result = neighbor_index_build_task.apply_async(args=[version.pk], queue=celery_queue)
    assert result.get(timeout=120)["built"] is True
    wait_for(lambda: (neighbor_dir(version) / "space.json").exists(), what="the index files")


def test_audit_filter_links_read_as_separate_words(admin_client):
    """ "opensent for a second lookrevieweddismissed": the links ran together as text."""
    import re

    from tests.labelapp.factories import make_dataset

    dataset = make_dataset(name="audit-filters", n_cases=5)
    html = admin_client.get(reverse("label-audit", args=[dataset.name])).content.decode()
    nav = re.search(r'<nav class="filters".*?</nav>', html, re.S).group(0)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", nav)).strip()
    words = [w.strip() for w in re.sub(r"<[^>]+>", "|", nav).split("|") if w.strip()]
    labels = ["all", "open", "sent for a second look", "reviewed", "dismissed"]
    assert all(label in words for label in labels)
    # Each link is separated from the next by more than markup: a visible separator.
    assert text.count("·") == len(labels) - 1

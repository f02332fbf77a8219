"""Pages of the foundation: the dataset list and detail with counts, the import upload page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from django.urls import reverse

from labelapp.models import Case, Dataset, PoolState
from labelapp.services.imports import dataset_import
from tests.labelapp.conftest import start_worker, stop_worker, wait_for
from tests.labelapp.factories import make_dataset_dir


@pytest.fixture
def fast_passwords(settings) -> None:
    """setup_demo sets four passwords: a fast hasher keeps these tests quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def folders(settings, tmp_path) -> Path:
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.UPLOADS_DIR = tmp_path / "uploads"
    return tmp_path


def upload_payload(folder: Path, name: str, **extra) -> dict:
    payload = {"name": name, **extra}
    for role in ("cases", "events"):
        for path in folder.glob(f"{role}.*"):
            payload[role] = open(path, "rb")  # noqa: SIM115 (closed by the test client)
    schema = folder / "schema.json"
    if schema.exists():
        payload["schema"] = open(schema, "rb")  # noqa: SIM115
    return payload


@pytest.mark.django_db
class TestUploadPage:
    def test_expert_and_outsider_cannot_reach_it(self, expert_client, outsider_client):
        for c in (expert_client, outsider_client):
            assert c.get(reverse("dataset-import")).status_code == 403
            assert c.post(reverse("dataset-import"), {"name": "x"}).status_code == 403

    def test_anonymous_is_sent_to_login(self, client):
        response = client.get(reverse("dataset-import"))
        assert response.status_code == 302 and reverse("login") in response["Location"]

    def test_admin_sees_the_form(self, admin_client):
        response = admin_client.get(reverse("dataset-import"))
        assert response.status_code == 200
        assert b'type="file"' in response.content and b'name="cases"' in response.content

    def test_upload_imports_a_small_dataset(self, admin_client, admin_user, folders):
        folder = make_dataset_dir(folders, n_cases=300, fmt="csv")
        response = admin_client.post(reverse("dataset-import"), upload_payload(folder, "upl"))
        assert response.status_code == 302
        assert response["Location"] == reverse("dataset-detail", args=["upl"])
        dataset = Dataset.objects.get(name="upl")
        assert dataset.n_cases == Case.objects.filter(dataset=dataset).count() == 300
        assert dataset.n_events > 0 and dataset.created_by == admin_user
        # The uploaded data files are not kept once imported (the snapshot has the data), nor
        # the folder and its status.json: an inline import's answer is the page itself.
        assert not list((folders / "uploads").glob("*/cases.*"))
        assert not list((folders / "uploads").iterdir())

    def test_upload_shows_the_report_and_writes_nothing(self, admin_client, folders):
        folder = make_dataset_dir(folders, n_cases=200, fmt="csv")
        lines = (folder / "cases.csv").read_text().splitlines()
        lines[5] = lines[2]  # data row 5 repeats data row 2
        (folder / "cases.csv").write_text("\n".join(lines) + "\n")
        response = admin_client.post(reverse("dataset-import"), upload_payload(folder, "bad"))
        assert response.status_code == 400
        html = response.content.decode()
        assert "Import rejected" in html and 'data-code="duplicate_case_id"' in html
        assert "cases.csv" in html
        assert not Dataset.objects.exists() and not Case.objects.exists()
        assert not list((folders / "uploads").iterdir()), "a rejected upload leaves no folder"

    def test_wrong_file_type_is_reported(self, admin_client, folders):
        (folders / "x").mkdir()
        (folders / "x" / "cases.xlsx").write_bytes(b"PK\x03\x04 not a table")
        response = admin_client.post(reverse("dataset-import"), upload_payload(folders / "x", "x"))
        assert response.status_code == 400
        assert 'data-code="not_csv_or_parquet"' in response.content.decode()

    def test_gzip_csv_upload_shows_inferred_types_and_warnings(self, admin_client, folders):
        """Issue 15: a .csv.gz upload imports; without schema.json the dataset page says which
        type each column got and warns about a numeric column made categorical by a word."""
        import gzip

        folder = make_dataset_dir(folders, n_cases=200, with_events=False, fmt="csv")
        (folder / "schema.json").unlink()
        frame = pd.read_csv(folder / "cases.csv", dtype=str, keep_default_na=False)
        frame.loc[7, "amount"] = "unknown"
        (folder / "cases.csv").unlink()
        with gzip.open(folder / "cases.csv.gz", "wt", encoding="utf-8") as out:
            frame.to_csv(out, index=False)
        response = admin_client.post(reverse("dataset-import"), upload_payload(folder, "zipped"))
        assert response.status_code == 302, response.content.decode()[:2000]
        dataset = Dataset.objects.get(name="zipped")
        assert dataset.n_cases == 200
        assert dataset.import_report["files"]["cases"]["name"] == "cases.csv.gz"
        html = admin_client.get(response["Location"]).content.decode()
        assert 'id="inferred-types"' in html and '<tr data-column="amount">' in html
        assert 'data-code="mostly_numeric"' in html and "99.5% of the values are numbers" in html


@pytest.mark.django_db
def test_dataset_list_and_detail_show_counts(expert_client, folders):
    dataset = dataset_import(name="demo", source_dir=make_dataset_dir(folders, n_cases=300))
    Case.objects.filter(dataset=dataset, row__in=[1, 2]).update(pool_state=PoolState.CONFIRMED)
    Case.objects.filter(dataset=dataset, row=3).update(pool_state=PoolState.NOT_CONFIRMED)
    Case.objects.filter(dataset=dataset, row=4).update(pool_state=PoolState.SKIPPED)

    html = expert_client.get(reverse("dataset-list")).content.decode()
    row = html[html.index('data-dataset="demo"') :]
    for css, value in (
        ("n-cases", 300),
        ("n-seed", dataset.n_seed_positive),
        ("n-events", dataset.n_events),
        ("n-labeled", 3),
    ):
        assert f'class="num {css}">{value}<' in row
    assert "Import a dataset" not in html  # experts do not import

    detail = expert_client.get(reverse("dataset-detail", args=["demo"])).content.decode()
    assert '<dd id="n-cases">300</dd>' in detail and '<dd id="n-labeled">3</dd>' in detail
    assert "terminal_id" in detail


@pytest.mark.worker
def test_large_upload_imports_in_a_worker_with_progress(
    admin_client, celery_queue, transactional_db, settings, tmp_path
):
    """Above IMPORT_INLINE_MAX_BYTES the page hands the import to a real worker and polls it."""
    shared = {"ARTIFACTS_DIR": str(tmp_path / "artifacts"), "UPLOADS_DIR": str(tmp_path / "up")}
    settings.ARTIFACTS_DIR, settings.UPLOADS_DIR = (
        Path(shared["ARTIFACTS_DIR"]),
        Path(shared["UPLOADS_DIR"]),
    )
    settings.IMPORT_INLINE_MAX_BYTES = 0
    worker = start_worker(celery_queue, extra_env=shared)
    try:
        folder = make_dataset_dir(tmp_path, n_cases=300)
        response = admin_client.post(reverse("dataset-import"), upload_payload(folder, "big"))
        assert response.status_code == 302
        status_url = response["Location"]
        assert "/datasets/import/" in status_url
        page = admin_client.get(status_url).content.decode()
        assert 'hx-trigger="every 1s"' in page  # polls while not done
        progress_url = status_url + "progress/"
        wait_for(
            lambda: "Imported" in admin_client.get(progress_url).content.decode(),
            timeout=90,
            what="the worker to import the upload",
        )
        final = admin_client.get(progress_url, HTTP_HX_REQUEST="true")
        assert final["HX-Redirect"] == reverse("dataset-detail", args=["big"])
        assert "every 1s" not in final.content.decode()  # polling stops
        assert Dataset.objects.get(name="big").n_cases == 300
    finally:
        stop_worker(worker, timeout=15)


@pytest.mark.django_db
def test_setup_demo_is_safe_to_rerun(folders, fast_passwords):
    from django.contrib.auth import authenticate
    from django.core.management import call_command

    from labelapp.roles import is_admin, is_expert

    for _ in range(2):
        call_command("setup_demo", cases=500)
    dataset = Dataset.objects.get()
    assert dataset.name == "demo-cards" and dataset.n_cases == 500
    assert dataset.n_seed_positive > 0 and dataset.n_events == 500
    admin, expert = (
        authenticate(username="admin", password="admin"),
        authenticate(username="expert", password="expert"),
    )
    assert is_admin(admin) and is_expert(expert) and not is_admin(expert)


@pytest.mark.django_db
def test_setup_demo_imports_a_given_folder_under_its_name(folders, fast_passwords):
    from django.core.management import call_command

    folder = make_dataset_dir(folders, n_cases=200, name="my_cards")
    call_command("setup_demo", data=folder)
    call_command("setup_demo", data=folder)  # already there: nothing to do
    assert list(Dataset.objects.values_list("name", "n_cases")) == [("my-cards", 200)]


@pytest.mark.django_db
def test_dataset_page_names_pool_states_for_people(expert_client, expert_user):
    import re

    from labelapp.services.queue import queue_next_case
    from tests.labelapp.factories import make_batch, make_dataset

    dataset = make_dataset(name="pool-names", n_cases=20, n_seed=2)
    make_batch(dataset, size=3)
    queue_next_case(user=expert_user, dataset=dataset)  # the expert opens one of the three
    html = expert_client.get(reverse("dataset-detail", args=[dataset.name])).content.decode()
    table = html[html.index('id="pool"') : html.index("</table>", html.index('id="pool"'))]
    labels = re.findall(r"<th>([^<]+)</th>", table)
    assert labels == [
        "Seed positives",
        "Confirmed cash-out",
        "In a batch, not answered yet",
        "Skipped",
        "Not confirmed",
        "Unlabeled",
    ]
    for internal in (">P<", ">U<", ">shown<", ">not_confirmed<"):
        assert internal not in table
    shown = table[table.index('data-state="shown"') :]
    assert '<td class="num">3</td>' in shown and "1 held open by an expert right now" in shown


@pytest.mark.django_db
def test_forbidden_and_missing_pages_are_styled(outsider_client, expert_client):
    forbidden = outsider_client.get(reverse("dataset-list"))
    assert forbidden.status_code == 403
    html = forbidden.content.decode()
    assert 'id="error-403"' in html and "no role that allows" in html
    assert 'href="/static/app.css"' in html and "Log out" in html  # the app's page, not bare
    missing = expert_client.get("/datasets/no-such-dataset/")
    assert missing.status_code == 404
    html = missing.content.decode()
    assert 'id="error-404"' in html and 'href="/static/app.css"' in html


def test_favicon_is_served_from_static(client):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/favicon.ico"
    found = finders.find("favicon.ico")
    assert found and Path(found).read_bytes()[:4] == b"\x00\x00\x01\x00"  # an ICO file

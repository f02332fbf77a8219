"""A real Chromium drives the labeling pages: keyboard-only labeling, undo, refusal of outsiders.

Needs Debian's ``/usr/bin/chromium`` (``apt-get install chromium``) and Playwright's Python
package; skips with a clear message otherwise. Screenshots land in ``test-output/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

from labelapp.models import Label, PoolState
from tests.labelapp.conftest import PASSWORD, REPO_ROOT
from tests.labelapp.factories import make_batch, make_dataset, make_pattern

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-output"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is absent"
)


@pytest.fixture(autouse=True)
def fast_hashing_and_own_artifacts(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Snapshots of datasets made here must not meet those of a development database.
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"


@pytest.fixture
def browser():
    # Playwright's sync API keeps an event loop in this thread; the ORM calls of the test body
    # happen before and after the browser steps, never during them.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()
            # While that loop runs, asgiref scopes Django's connections to the loop's context,
            # so the ORM calls of the test body opened connections of their own; close them
            # here, or one outlives the session and the test database cannot be dropped.
            connections.close_all()


def log_in(page, base_url: str, username: str, next_url: str) -> None:
    """Log in with the keyboard alone: type, Tab, type, Enter."""
    page.goto(f"{base_url}{next_url}")
    page.wait_for_selector("input[name=username]:focus")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state()


def wait_for_case(page, case_id: str) -> None:
    page.wait_for_selector(f"#workspace[data-case-id='{case_id}']")
    # focus is on the workspace again after every swap: keys keep working
    assert page.evaluate("document.activeElement.id") == "workspace"


def test_expert_labels_a_batch_by_keyboard_and_undoes_one(live_server, browser, expert_user):
    dataset = make_dataset(name="browser-toy", n_cases=30)
    items = make_batch(dataset, size=4)
    tag = make_pattern("colluding merchant")
    case_ids = [item.case.case_id for item in items]
    queue_url = f"/datasets/{dataset.name}/queue/"
    SCREENSHOTS.mkdir(exist_ok=True)

    page = browser.new_page(viewport={"width": 1360, "height": 900})
    log_in(page, live_server.url, expert_user.username, queue_url)
    page.wait_for_selector("#start-labeling:focus")
    page.screenshot(path=str(SCREENSHOTS / "queue.png"), full_page=True)
    page.keyboard.press("Enter")

    # case 1: tag a pattern, write a comment, confirm, all from the keyboard
    wait_for_case(page, case_ids[0])
    page.screenshot(path=str(SCREENSHOTS / "case.png"), full_page=True)
    page.keyboard.press("?")
    page.wait_for_selector("#help[open]")
    page.screenshot(path=str(SCREENSHOTS / "case_help.png"))
    page.keyboard.press("Escape")
    page.keyboard.press("p")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Escape")
    page.keyboard.press("m")
    page.keyboard.type("same terminal as two known cash-outs")
    page.keyboard.press("Escape")
    page.keyboard.press("c")
    # case 2: not confirmed; case 3: skip; case 4: confirm, then undo it and say not confirmed
    wait_for_case(page, case_ids[1])
    page.keyboard.press("n")
    wait_for_case(page, case_ids[2])
    page.keyboard.press("s")
    wait_for_case(page, case_ids[3])
    page.keyboard.press("c")
    page.wait_for_selector("#queue-empty")
    page.screenshot(path=str(SCREENSHOTS / "queue_done.png"))
    page.keyboard.press("u")
    wait_for_case(page, case_ids[3])
    assert "Undid your answer" in page.inner_text("#notice")
    page.keyboard.press("n")
    page.wait_for_selector("#queue-empty")
    assert page.url.endswith(queue_url)
    page.close()

    effective = {
        lbl.case.case_id: lbl
        for lbl in Label.objects.filter(undone_by__isnull=True)
        .exclude(answer=Label.Answer.UNDONE)
        .select_related("case", "pattern")
    }
    assert {cid: lbl.answer for cid, lbl in effective.items()} == {
        case_ids[0]: "confirmed",
        case_ids[1]: "not_confirmed",
        case_ids[2]: "skipped",
        case_ids[3]: "not_confirmed",
    }
    first = effective[case_ids[0]]
    assert first.pattern == tag and first.comment == "same terminal as two known cash-outs"
    assert Label.objects.count() == 6  # four answers, the undone confirmation, the undo row
    assert Label.objects.get(answer=Label.Answer.UNDONE).undoes.case.case_id == case_ids[3]
    states = dict(dataset.cases.filter(case_id__in=case_ids).values_list("case_id", "pool_state"))
    assert states == {
        case_ids[0]: PoolState.CONFIRMED,
        case_ids[1]: PoolState.NOT_CONFIRMED,
        case_ids[2]: PoolState.SKIPPED,
        case_ids[3]: PoolState.NOT_CONFIRMED,
    }


def test_an_outsider_is_refused(live_server, browser, outsider_user):
    dataset = make_dataset(name="browser-closed", n_cases=6)
    (item,) = make_batch(dataset, size=1)
    page = browser.new_page()
    log_in(page, live_server.url, outsider_user.username, f"/datasets/{dataset.name}/queue/")
    assert page.url.endswith(f"/datasets/{dataset.name}/queue/")
    assert "Forbidden" in page.content()
    response = page.goto(f"{live_server.url}/cases/{item.case_id}/")
    assert response.status == 403
    assert "Confirm cash-out" not in page.content()
    page.close()
    assert not Label.objects.exists()


def test_admin_sees_the_batch_and_the_stats(live_server, browser, admin_user, expert_user):
    from labelapp.services.labels import label_create

    dataset = make_dataset(name="browser-admin", n_cases=30)
    items = make_batch(dataset, size=6)
    for item, answer in zip(items, ["confirmed", "not_confirmed", "not_confirmed"], strict=False):
        label_create(user=expert_user, case=item.case, answer=answer, seconds_spent=42.0)
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    log_in(page, live_server.url, admin_user.username, f"/datasets/{dataset.name}/queue/")
    assert page.locator("#batch-items tbody tr").count() == 6
    page.screenshot(path=str(SCREENSHOTS / "queue_admin.png"), full_page=True)
    page.goto(f"{live_server.url}/experts/stats/?dataset={dataset.name}")
    assert "eve-expert" in page.inner_text("#expert-stats")
    page.screenshot(path=str(SCREENSHOTS / "expert_stats.png"), full_page=True)
    page.close()

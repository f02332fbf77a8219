"""A real Chromium drives the labeling pages: keyboard-only labeling, undo, refusal of outsiders.

Needs Debian's ``/usr/bin/chromium`` (``apt-get install chromium``) and Playwright's Python
package; skips with a clear message otherwise. Screenshots land in ``test-output/``.
"""

from __future__ import annotations

import pytest

from labelapp.models import Label, PoolState
from tests.labelapp.browser.conftest import BROWSER_MARKS, SCREENSHOTS, log_in
from tests.labelapp.factories import make_batch, make_dataset, make_pattern

pytestmark = BROWSER_MARKS
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is absent"
)


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
    # A styled page that says why, with the app's navigation (not a bare "403 Forbidden").
    assert page.locator("#error-403").is_visible()
    assert "no role that allows" in page.inner_text("#error-403")
    assert page.locator("header.topbar").is_visible()
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


def test_help_on_the_queue_page_and_keys_that_cannot_act_say_why(live_server, browser, expert_user):
    from labelapp.services.labels import label_create

    dataset = make_dataset(name="browser-keys", n_cases=20)
    items = make_batch(dataset, size=3)
    label_create(user=expert_user, case=items[0].case, answer="not_confirmed")
    label_create(user=expert_user, case=items[1].case, answer="confirmed")
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    log_in(page, live_server.url, expert_user.username, f"/datasets/{dataset.name}/queue/")
    page.wait_for_selector("#start-labeling:focus")
    page.keyboard.press("?")  # did nothing on the queue page
    page.wait_for_selector("#help[open]")
    assert "Skip: you cannot judge it now" in page.inner_text("#help")
    page.keyboard.press("Escape")

    # A case answered earlier (not the last one): read only, and the keys say so.
    page.goto(f"{live_server.url}/cases/{items[0].case_id}/")
    page.wait_for_selector("#read-only")
    assert page.locator("#btn-confirm").count() == 0 and page.locator("#btn-undo").count() == 0
    page.keyboard.press("c")
    page.wait_for_selector("#key-refused")
    assert "already answered" in page.inner_text("#key-refused")
    page.keyboard.press("u")  # must not undo the other case's answer from here
    assert "Nothing to undo here" in page.inner_text("#key-refused")
    page.screenshot(path=str(SCREENSHOTS / "case_read_only.png"), full_page=True)
    page.close()
    assert not Label.objects.filter(answer=Label.Answer.UNDONE).exists()

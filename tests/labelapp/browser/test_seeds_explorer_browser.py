"""Seeds and the case explorer, driven in Chromium: a dataset imported without seed positives
cannot launch; a seed rule is previewed, applied, an iteration runs on a real worker, the change
is undone; the explorer filters and pages."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from labelapp.models import Dataset, Iteration
from labelapp.services.imports import dataset_import
from tests.labelapp.browser.conftest import BROWSER_MARKS, SCREENSHOTS, log_in
from tests.labelapp.conftest import start_worker, stop_worker, wait_for
from tests.labelapp.factories import make_dataset_dir

pytestmark = BROWSER_MARKS
RULE = "amount > 150"
FAST = {"batch_size": "20", "n_clusters": "2", "pool_size": "100", "n_estimators": "20"}


@pytest.fixture
def unseeded(transactional_db, tmp_path):
    """A dataset imported without any seed positive (its seed_positive column all 0)."""
    folder = make_dataset_dir(tmp_path, n_cases=600, seed=2, name="noseeds", with_events=False)
    cases = pd.read_parquet(folder / "cases.parquet")
    cases["seed_positive"] = 0
    cases.to_parquet(folder / "cases.parquet", index=False)
    return dataset_import(name="noseeds", source_dir=folder)


@pytest.fixture
def worker(transactional_db, celery_queue) -> Iterator[None]:
    from labelapp.tasks.system import ping

    proc = start_worker(celery_queue, extra_env={"LOOP_THREADS": "1", "LOOP_WORKER_NICE": "0"})
    try:
        ping.apply_async(args=[1], queue=celery_queue).get(timeout=90)
        yield
    finally:
        stop_worker(proc)


def test_seed_rule_preview_apply_launch_undo(live_server, browser, admin_user, unseeded, worker):
    base = live_server.url
    page = browser.new_page()
    log_in(page, base, admin_user.username, f"/datasets/{unseeded.name}/iterations/new/")
    for name, value in FAST.items():
        page.fill(f"input[name={name}]", value)
    page.click("button[type=submit]:has-text('Launch')")
    page.wait_for_selector("#needs-seeds")  # refused, with a way to the seeds page
    assert "needs at least 2" in page.inner_text("form.card")
    page.click("#needs-seeds a")
    page.wait_for_selector("#rule-form")

    page.fill("#rule", RULE)
    page.click("#preview-rule")
    page.wait_for_selector("#seed-preview")
    n_change = int(page.inner_text("#n-change"))
    assert n_change >= 2 and page.locator("#seed-sample tbody tr").count() == min(n_change, 20)
    assert Dataset.objects.get(pk=unseeded.pk).n_seed_positive == 0  # previewed only
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "seeds_preview.png"), full_page=True)
    page.click("#apply")
    page.wait_for_selector(".messages li.success")
    assert f"{n_change} cases marked" in page.inner_text(".messages")
    assert page.inner_text("#n-seed").strip() == str(n_change)

    page.goto(f"{base}/datasets/{unseeded.name}/iterations/new/")
    for name, value in FAST.items():
        page.fill(f"input[name={name}]", value)
    page.click("button[type=submit]:has-text('Launch')")
    page.wait_for_url("**/iterations/1/**")
    iteration = Iteration.objects.get(dataset=unseeded, number=1)

    def ended():
        iteration.refresh_from_db()
        return iteration.status in ("done", "failed", "cancelled")

    wait_for(ended, timeout=180, what="the iteration to end")
    assert iteration.status == "done", iteration.log
    assert iteration.metrics["positives"] == n_change

    page.goto(f"{base}/datasets/{unseeded.name}/seeds/")
    page.screenshot(path=str(SCREENSHOTS / "seeds_changes.png"), full_page=True)
    page.click("#seed-changes button[data-undo]")
    page.wait_for_selector(".messages li.success")
    assert f"{n_change} cases restored" in page.inner_text(".messages")
    assert page.inner_text("#n-seed").strip() == "0"
    assert "undone by" in page.inner_text("#seed-changes")


def test_explorer_filters_and_pages(live_server, browser, admin_user, unseeded):
    page = browser.new_page()
    log_in(page, live_server.url, admin_user.username, f"/datasets/{unseeded.name}/")
    page.click("#link-explorer")
    page.wait_for_selector("#explorer-form")
    page.fill("#where", "amount > 20 and is_weekend == 0")
    page.select_option("#sort", "time")
    page.check("input[name=state][value=U]")
    page.click("#filter")
    page.wait_for_selector("#cases")
    first = page.locator("#cases tbody tr").evaluate_all("rows => rows.map(r => r.dataset.case)")
    assert len(first) == 50
    page.click("#next-page")
    page.wait_for_selector("#first-page")
    second = page.locator("#cases tbody tr").evaluate_all("rows => rows.map(r => r.dataset.case)")
    assert second and not set(first) & set(second)
    assert page.input_value("#where") == "amount > 20 and is_weekend == 0"  # filters kept
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "explorer.png"), full_page=True)
    page.click(f"#cases a:text-is('{second[0]}')")
    page.wait_for_selector("#case-title")
    assert page.inner_text("#case-title") == second[0]
    page.go_back()
    page.fill("#where", "amount.real > 1")
    page.click("#filter")
    page.wait_for_selector("#where-error")
    assert "attribute access" in page.inner_text("#where-error")

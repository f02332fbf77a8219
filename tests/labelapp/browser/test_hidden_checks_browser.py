"""A real Chromium through the hidden checks of expert recall: an admin sets the share, an
iteration runs, a check reaches an expert's queue looking like any case, the expert answers it,
and the expert stats count it (while the case stays a seed positive)."""

from __future__ import annotations

import pytest

from labelapp.models import BatchItem, Iteration, Label, PoolState
from labelapp.services.iterations import iteration_params_clean
from labelapp.services.pipeline import iteration_execute
from tests.labelapp.browser.conftest import BROWSER_MARKS, SCREENSHOTS, log_in
from tests.labelapp.loop_data import make_loop_dataset

pytestmark = BROWSER_MARKS
FAST = {"batch_size": 10, "n_clusters": 3, "pool_size": 60, "n_estimators": 30}


@pytest.fixture
def loop_dataset(transactional_db, tmp_path, settings):
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0
    dataset, _ = make_loop_dataset("browser-checks", tmp_path / "snapshots", n_cases=1200)
    return dataset


def _run_iteration(dataset, admin_user) -> Iteration:
    """The pipeline in this process (what a worker runs for a launched iteration)."""
    iteration = Iteration.objects.create(
        dataset=dataset,
        number=1,
        params=iteration_params_clean(FAST, dataset=dataset),
        launched_by=admin_user,
    )
    assert iteration_execute(iteration_id=iteration.pk)["status"] == "done"
    return iteration


def test_a_hidden_check_reaches_the_queue_unseen_and_counts_in_the_stats(
    live_server, browser, loop_dataset, admin_user, expert_user
):
    dataset = loop_dataset
    SCREENSHOTS.mkdir(exist_ok=True)

    admin = browser.new_page(viewport={"width": 1360, "height": 900})
    log_in(admin, live_server.url, admin_user.username, f"/datasets/{dataset.name}/")
    admin.fill("#hidden-check-percent", "20")
    with admin.expect_navigation():
        admin.click("#hidden-check-save")
    assert "Hidden checks: 20% of each new batch." in admin.inner_text("body")
    admin.screenshot(path=str(SCREENSHOTS / "hidden_checks_setting.png"), full_page=True)

    iteration = _run_iteration(dataset, admin_user)
    checks = set(
        BatchItem.objects.filter(iteration=iteration, is_check=True).values_list(
            "case__case_id", flat=True
        )
    )
    assert len(checks) == 2

    expert = browser.new_page(viewport={"width": 1360, "height": 900})
    log_in(expert, live_server.url, expert_user.username, f"/datasets/{dataset.name}/queue/")
    expert.wait_for_selector("#start-labeling:focus")
    expert.keyboard.press("Enter")
    answered_check = None
    looks = []
    for _ in range(12):  # the batch: 10 new cases and 2 checks
        expert.wait_for_selector("#workspace[data-case-id]")
        case_id = expert.get_attribute("#workspace", "data-case-id")
        # What the case page says of the case itself (the similar-cases panel is of others).
        text = " ".join(expert.inner_text(s) for s in (".case-head", "#why", "#answer", "#history"))
        looks.append((expert.inner_text("#pool-state"), "Seed" in text, "check" in text.lower()))
        if case_id in checks:
            expert.screenshot(path=str(SCREENSHOTS / "hidden_check_case.png"), full_page=True)
            answered_check = case_id
            expert.keyboard.press("c")
            break
        expert.keyboard.press("s")
        expert.wait_for_selector(f"#workspace:not([data-case-id='{case_id}'])")
    assert answered_check is not None
    # Every case looked the same: in a batch, no word of seeds or checks.
    assert set(looks) == {("In a batch", False, False)}, looks
    expert.wait_for_selector(f"#workspace:not([data-case-id='{answered_check}'])")

    label = Label.objects.get(case__case_id=answered_check, user=expert_user)
    assert label.answer == "confirmed" and label.batch_item.is_check
    assert dataset.cases.get(case_id=answered_check).pool_state == PoolState.POSITIVE

    admin.goto(f"{live_server.url}/experts/stats/?dataset={dataset.name}")
    row = admin.locator("#expert-stats tr", has_text=expert_user.username)
    assert "100%" in row.locator(".check-recall").inner_text()
    assert "n=1" in row.locator(".check-recall").inner_text()
    admin.screenshot(path=str(SCREENSHOTS / "hidden_checks_stats.png"), full_page=True)
    expert.close()
    admin.close()

"""The map of the cases in a real Chromium: a version built by the real pipeline in a real
worker, whose map the worker computes after the iteration; hovering a dot shows its case id and
score, clicking it opens that case's page."""

from __future__ import annotations

import math

import pytest

from labelapp.models import Iteration, ModelVersion
from labelapp.selectors.case_map import case_map_path
from labelapp.services.imports import dataset_import
from labelapp.services.iterations import iteration_launch
from tests.labelapp.browser.conftest import BROWSER_MARKS, SCREENSHOTS, log_in
from tests.labelapp.conftest import start_worker, stop_worker, wait_for
from tests.labelapp.factories import make_dataset_dir
from tests.labelapp.test_loop_worker import FAST

pytestmark = [*BROWSER_MARKS, pytest.mark.worker]

WORKER_ENV = {"LOOP_THREADS": "1", "LOOP_WORKER_NICE": "0", "CASE_MAP_AFTER_ITERATION": "1"}


@pytest.fixture
def map_worker(transactional_db, celery_queue):
    from labelapp.tasks.system import ping

    proc = start_worker(celery_queue, extra_env=WORKER_ENV)
    try:
        ping.apply_async(args=[1], queue=celery_queue).get(timeout=90)
        yield proc
    finally:
        stop_worker(proc, timeout=20)


def _isolated(points: list[dict], wanted: set[str], min_px: float = 3.0) -> dict:
    """The dot of one of the ``wanted`` states farthest from any other dot.

    The map's hover takes the nearest dot, so the pointer at a dot's centre finds that dot as
    long as no other lies within a pixel or two (sub-pixel rounding of the pointer); how far
    apart the dots lie depends on the layout, which changes with every batch drawn.
    """
    best, best_gap = None, -1.0
    for p in points:
        if p["state"] not in wanted:
            continue
        gap = min(
            (math.hypot(p["x"] - q["x"], p["y"] - q["y"]) for q in points if q is not p),
            default=math.inf,
        )
        if gap > best_gap:
            best, best_gap = p, gap
    if best is None or best_gap < min_px:
        pytest.fail(f"no dot among the states {wanted} lies {min_px} px from every other")
    return best


def test_hover_a_dot_of_the_map_then_click_it_to_its_case(
    live_server, browser, map_worker, admin_user, tmp_path
):
    folder = make_dataset_dir(tmp_path, n_cases=2500, seed=3, name="mapbrowser")
    dataset = dataset_import(name="mapbrowser", source_dir=folder)
    iteration = iteration_launch(dataset=dataset, user=admin_user, params=FAST)

    def ended():
        iteration.refresh_from_db()
        return iteration.status in ("done", "failed", "cancelled")

    wait_for(ended, timeout=240, what="the iteration to end")
    assert iteration.status == Iteration.Status.DONE, iteration.log
    version = ModelVersion.objects.get(pk=iteration.model_version_id)
    # The worker computes the map after the iteration by itself (UMAP's first compile included).
    wait_for(lambda: case_map_path(version).exists(), timeout=300, what="the worker's map")

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, live_server.url, admin_user.username, f"/models/{version.pk}/")
    page.wait_for_selector(".case-map[data-case-map-state=ready]")
    page.locator("#case-map").scroll_into_view_if_needed()
    assert "Space: the version's feature matrix" in page.inner_text("#case-map")
    points = page.evaluate("() => document.querySelector('.case-map').caseMap.positions()")
    assert len(points) == 2500 and {"P", "shown"} <= {p["state"] for p in points}
    SCREENSHOTS.mkdir(exist_ok=True)
    page.locator("#case-map").screenshot(path=str(SCREENSHOTS / "case_map_state.png"))

    target = _isolated(points, {"P", "shown"})
    page.mouse.move(target["x"], target["y"])
    tip = page.locator(".case-map-tip")
    tip.wait_for(state="visible")
    assert tip.inner_text().startswith(target["case_id"] + " · score ")
    page.locator("#case-map").screenshot(path=str(SCREENSHOTS / "case_map_hover.png"))

    page.check("input[name^=case-map-colour][value=score]")
    assert "score (log scale)" in page.inner_text(".case-map-legend")
    page.locator("#case-map").screenshot(path=str(SCREENSHOTS / "case_map_score.png"))

    with page.expect_navigation():
        page.mouse.click(target["x"], target["y"])
    assert page.url == f"{live_server.url}/cases/{target['pk']}/"
    assert target["case_id"] in page.inner_text("main")
    page.close()

"""The browser tests' Chromium (Debian's /usr/bin/chromium driven by Playwright) and helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

from tests.labelapp.conftest import PASSWORD, REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-output"
#: ``pytestmark`` of every browser test module.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"
    ),
]


@pytest.fixture(autouse=True)
def fast_hashing_and_own_artifacts(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Snapshots of datasets made here must not meet those of a development database.
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"


@pytest.fixture
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright's Python package is absent"
    )
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

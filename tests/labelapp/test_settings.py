"""Deployment settings: secure by default once DEBUG is off, and a real secret key required.

Settings are read once per process, so each case runs in a fresh Python with its environment.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.labelapp.conftest import REPO_ROOT

#: Variables of the parent environment that would decide what is tested here.
DECIDING = re.compile(r"^(DEBUG|SECRET_KEY|SECURE_.*|SESSION_COOKIE_SECURE|CSRF_COOKIE_SECURE)$")


def clean_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    # Not the test run's own switches either: the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in
    # this process (Playwright's loop), which check --deploy rightly refuses in production.
    env = {
        k: v
        for k, v in os.environ.items()
        if not DECIDING.match(k) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    folders = {name: str(tmp_path / name.lower()) for name in ("VAR_DIR", "STATIC_ROOT")}
    folders["ARTIFACTS_DIR"] = str(tmp_path / "var" / "artifacts")
    folders["UPLOADS_DIR"] = str(tmp_path / "var" / "uploads")
    return {**env, **folders, **overrides}


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def compose_environment(**given: str) -> dict[str, str]:
    """The web service's environment in docker-compose.yml, ``${NAME:-default}`` resolved to its
    default and ``${NAME:?message}`` (required) to ``given[NAME]``."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    resolved = {}
    for name, value in compose["services"]["web"]["environment"].items():
        value = str(value)
        match = re.fullmatch(r"\$\{(\w+)(:-|:\?)(.*)\}", value)
        if match and match.group(2) == ":-":
            value = given.get(match.group(1), match.group(3))
        elif match:
            value = given[match.group(1)]  # required: the test must give it
        resolved[name] = value
    return resolved


def new_secret_key() -> str:
    return secrets.token_urlsafe(50)


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    """The compose file's settings (DEBUG off, a real key, behind a TLS proxy) pass
    ``check --deploy`` without a single warning."""
    production = compose_environment(
        SECRET_KEY=new_secret_key(), SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https"
    )
    assert production["DEBUG"] == "0"
    paths = {"VAR_DIR", "ARTIFACTS_DIR", "UPLOADS_DIR", "STATIC_ROOT"}
    env = clean_env(tmp_path, **{k: v for k, v in production.items() if k not in paths})
    result = run_python(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_https_settings_follow_debug_and_the_environment(tmp_path):
    show = (
        "from django.conf import settings as s; import django; django.setup(); "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, "
        "s.SECURE_PROXY_SSL_HEADER)"
    )
    base = clean_env(tmp_path, DJANGO_SETTINGS_MODULE="labelapp.settings")
    development = run_python(base, "-c", show)
    assert development.stdout.split() == ["False"] * 3 + ["0", "False", "False", "None"]
    key = new_secret_key()
    production = run_python({**base, "DEBUG": "false", "SECRET_KEY": key}, "-c", show)
    assert production.stdout.split() == ["True"] * 3 + ["31536000", "True", "True", "None"]
    trial = run_python(
        {**base, "DEBUG": "false", "SECRET_KEY": key, "SECURE_HTTPS": "false"}, "-c", show
    )
    assert trial.stdout.split() == ["False"] * 3 + ["0", "False", "False", "None"]
    proxied = run_python(
        {**base, "DEBUG": "0", "SECRET_KEY": key, "SECURE_PROXY_SSL_HEADER": "HTTP_X_FP,https"},
        "-c",
        show,
    )
    assert proxied.stdout.split()[-2:] == ["('HTTP_X_FP',", "'https')"], proxied.stderr


@pytest.mark.parametrize(
    "key, says",
    [
        (None, "is a default, published key"),
        ("change-me-in-production", "is a default, published key"),
        ("s3cr3t-but-only-32-characters-ok", "is 32 characters long; it needs at least 50"),
        ("ab" * 30, "has fewer than 5 different characters"),
    ],
)
def test_the_web_server_refuses_to_start_with_debug_off_and_a_weak_key(tmp_path, key, says):
    env = clean_env(tmp_path, DEBUG="false", DJANGO_SETTINGS_MODULE="labelapp.settings")
    if key is not None:
        env["SECRET_KEY"] = key
    # What gunicorn loads (labelapp.wsgi:application).
    result = run_python(env, "-c", "from labelapp.wsgi import application")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and says in result.stderr, result.stderr
    assert "refusing to start" in result.stderr

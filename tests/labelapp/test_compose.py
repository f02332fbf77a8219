"""docker-compose.yml and the Dockerfile (Docker does not run here: parse and check them)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.labelapp.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def command_text(service: dict) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_services(compose):
    assert set(compose["services"]) == {"db", "redis", "web", "worker", "beat"}
    assert compose["services"]["db"]["image"].startswith("postgres:")
    assert compose["services"]["redis"]["image"].startswith("redis:")


def test_web_and_worker_share_one_image_and_the_data_volume(compose):
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert web["build"] == worker["build"] == "."
    assert web["image"] == worker["image"]
    assert web["volumes"] == worker["volumes"]
    data_mount = web["volumes"][0].split(":")[1]
    for key in ("ARTIFACTS_DIR", "UPLOADS_DIR"):
        assert web["environment"][key] == worker["environment"][key]
        assert web["environment"][key].startswith(data_mount)


def test_commands(compose):
    web = command_text(compose["services"]["web"])
    assert "manage.py migrate" in web
    assert re.search(r"gunicorn labelapp\.wsgi:application --bind 0\.0\.0\.0:8000", web)
    worker = command_text(compose["services"]["worker"])
    assert worker.startswith("celery -A labelapp worker")
    assert compose["services"]["web"]["ports"] == ["8000:8000"]
    # One beat sends the reaper on its schedule (a dead worker's iteration fails within 60 s).
    beat = compose["services"]["beat"]
    assert command_text(beat).startswith("celery -A labelapp beat")
    assert beat["volumes"] == compose["services"]["worker"]["volumes"]
    assert "/data/" in command_text(beat)  # its schedule file on the volume, not in the image


def test_environment_points_at_the_services(compose):
    for name in ("web", "worker", "beat"):
        env = compose["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert env["DEBUG"] == "0"
        # No key ships with the file: compose stops unless SECRET_KEY is set (issue 15).
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        deps = compose["services"][name]["depends_on"]
        assert deps["db"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    db_env = compose["services"]["db"]["environment"]
    url = compose["services"]["web"]["environment"]["DATABASE_URL"]
    assert url == (
        f"postgres://{db_env['POSTGRES_USER']}:{db_env['POSTGRES_PASSWORD']}"
        f"@db:5432/{db_env['POSTGRES_DB']}"
    )


def test_dockerfile_serves_static_files_with_whitenoise():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "collectstatic" in dockerfile
    assert re.search(r'CMD \["gunicorn", "labelapp\.wsgi:application"', dockerfile)
    from django.conf import settings

    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE


def test_no_secret_key_ships_with_the_deployment_files():
    for name in ("docker-compose.yml", "Dockerfile"):
        text = (REPO_ROOT / name).read_text()
        assert "change-me" not in text and "SECRET_KEY:-" not in text, name

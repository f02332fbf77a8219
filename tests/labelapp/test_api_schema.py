"""The OpenAPI schema: it validates, the docs pages serve it offline, and schemathesis, generating
requests from it (valid and invalid ones), never gets a server error from the app; against a live
server, every schemathesis check passes (the schema and the behaviour agree)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck
from schemathesis import GenerationMode

from tests.labelapp.api_fixtures import *  # noqa: F403
from tests.labelapp.api_fixtures import api_client_for

# Examples per operation and mode: bounded so that the run stays well under a minute and a half.
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "8"))


def test_schema_validates(db, tmp_path):
    out = tmp_path / "schema.yaml"
    # --validate checks the document against the OpenAPI 3 meta-schema; warnings fail too.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "openapi: 3" in text
    for path in ("/api/datasets/import/", "/api/score/", "/api/models/{id}/download/"):
        assert path in text


def test_schema_documents_auth_and_errors(client, db):
    schema = client.get("/api/schema/?format=json").json()
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    score = schema["paths"]["/api/score/"]["post"]
    assert {"200", "400", "401", "403", "404"} <= set(score["responses"])
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "detail", "status"]


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_everything_from_static(client, db, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("/static/drf_spectacular_sidecar/" in s for s in sources), sources
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], sources


def test_docs_assets_are_served(client, db):
    from django.contrib.staticfiles import finders

    for asset in (
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
    ):
        assert finders.find(asset), asset


@pytest.fixture
def wsgi_app():
    """The WSGI app, run in this thread inside the test's transaction.

    Django closes "old" connections around every request; in a test that would end the test's
    transaction, so (as Django's own test client does) the handler is kept from doing that.
    """
    from django.core.wsgi import get_wsgi_application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_fuzzing_finds_no_server_error(world, wsgi_app, settings, caplog):
    caplog.set_level("ERROR", logger="django.request")  # 4xx answers are the point, not news
    settings.DEBUG = False
    # Generous rates: the fuzzer is one user sending hundreds of requests.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(
            settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "100000/hour"
        ),
    }
    token = api_client_for(world.users["admin"])._credentials["HTTP_AUTHORIZATION"]
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    # Real objects for the path parameters half of the time, random ones otherwise.
    known = {
        "name": world.dataset.name,
        "id": world.visible_case.pk,
        "upload_id": world.upload_id,
    }
    failures: list[str] = []
    n_requests = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        ids = {
            "/api/models/{id}/": world.model_version.pk,
            "/api/iterations/{id}/": world.iteration.pk,
            "/api/labels/{id}/": world.expert_label.pk,
        }
        path_ids = dict(known)
        for prefix, pk in ids.items():
            if operation.path.startswith(prefix):
                path_ids["id"] = pk
        runs = [(GenerationMode.POSITIVE, None), (GenerationMode.POSITIVE, path_ids)]
        if len(operation.query) or len(operation.body):
            # Invalid input only where there is input beyond the (fixed) path.
            runs.append((GenerationMode.NEGATIVE, path_ids))
        for mode, fixed in runs:
            params = {k: v for k, v in (fixed or {}).items() if f"{{{k}}}" in operation.path}
            strategy = operation.as_strategy(
                generation_mode=mode,
                headers={"Authorization": token},
                path_parameters=params or None,
            )

            @hypothesis.given(case=strategy)
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            def exercise(case):
                nonlocal n_requests
                response = case.call()
                n_requests += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}\n"
                        f"  query={case.query} body={str(case.body)[:300]}\n"
                        f"  {response.text[:500]}"
                    )

            try:
                exercise()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid (e.g. an operation whose only input is fixed)
    assert n_requests > 100
    assert not failures, "\n".join(failures[:10])


#: Schemathesis's settings for this project (the few documented exceptions of one check).
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Seconds of generated requests against the live server (the run stops then).
LIVE_FUZZ_SECONDS = int(os.environ.get("API_LIVE_FUZZ_SECONDS", "60"))


@pytest.mark.django_db(transaction=True)
def test_a_live_server_passes_every_schemathesis_check(
    world, live_server, settings, celery_queue, tmp_path
):
    """Schemathesis's CLI, every check (status codes, content types, response schemas, valid
    data accepted, invalid data rejected, auth, methods...), all phases, a few examples per
    operation and a minute at most, against the app served on localhost."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(
            settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "100000/hour"
        ),
    }
    token = api_client_for(world.users["admin"])._credentials["HTTP_AUTHORIZATION"]
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(SCHEMATHESIS_CONFIG),
        "run",
        f"{live_server.url}/api/schema/?format=json",
        "--header",
        f"Authorization: {token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "3",
        "--max-time",
        str(LIVE_FUZZ_SECONDS),
        "--workers",
        "1",
        "--seed",
        "15",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=LIVE_FUZZ_SECONDS + 240, cwd=tmp_path
    )
    summary = run.stdout[run.stdout.rfind("FAILURES") :] if "FAILURES" in run.stdout else ""
    assert run.returncode == 0, (summary or run.stdout[-6000:]) + run.stderr[-2000:]
    print(run.stdout[-3000:])  # the summary (operations, test cases, checks), with pytest -s
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert tested and int(tested.group(1)) >= 20, run.stdout[-3000:]

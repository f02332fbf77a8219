"""Django settings, read from the environment with defaults that run locally with nothing installed.

Defaults: a SQLite file and a filesystem Celery broker under ``var/`` (served by a real, separate
worker process), ``DEBUG`` on. Point ``DATABASE_URL`` at PostgreSQL and ``CELERY_BROKER_URL`` at
Redis for a real deployment, with ``DEBUG=false``: the HTTPS settings then default to secure
values (``python manage.py check --deploy`` is clean) and a default or short ``SECRET_KEY`` stops
the server from starting.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
# The fallback key is only for local development; deployments must set SECRET_KEY.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me"
#: Keys that were published (in this repository's history, in Django's templates).
PUBLISHED_SECRET_KEYS = {DEVELOPMENT_SECRET_KEY, "change-me-in-production", ""}
MIN_SECRET_KEY_LENGTH = 50
SECRET_KEY = env_str("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` cannot sign a deployment's sessions, or None (Django's own W009 rules)."""
    if key in PUBLISHED_SECRET_KEYS or key.startswith("django-insecure-"):
        return "is a default, published key"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"is {len(key)} characters long; it needs at least {MIN_SECRET_KEY_LENGTH}"
    if len(set(key)) < 5:
        return "has fewer than 5 different characters"
    return None


if not DEBUG and (_problem := secret_key_problem(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"SECRET_KEY {_problem}, and DEBUG is off: refusing to start. Set SECRET_KEY to "
        f"{MIN_SECRET_KEY_LENGTH} or more random characters, e.g. the output of "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))' (or run with DEBUG=true "
        "for local development)."
    )

# --- HTTPS (secure by default once DEBUG is off; every value can be set from the environment) --
# SECURE_HTTPS=false serves a DEBUG-off site over plain HTTP (a local trial of docker compose);
# check --deploy then warns, as it should.
SECURE_HTTPS = env_bool("SECURE_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SECURE_HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if SECURE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HTTPS)
# Behind a proxy that terminates TLS: the header that says the request came over HTTPS, as
# "HTTP_X_FORWARDED_PROTO,https" (only when the proxy always sets or strips that header).
_proxy_header = env_list("SECURE_PROXY_SSL_HEADER", [])
if _proxy_header and len(_proxy_header) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER is a header and its value, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header) if _proxy_header else None

ARTIFACTS_DIR = Path(env_str("ARTIFACTS_DIR", str(VAR_DIR / "artifacts")))
UPLOADS_DIR = Path(env_str("UPLOADS_DIR", str(VAR_DIR / "uploads")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served from static/, no CDN
    "labelapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "labelapp.api.errors.ApiErrorMiddleware",
]

ROOT_URLCONF = "labelapp.urls"
CSRF_FAILURE_VIEW = "labelapp.api.errors.csrf_failure"
WSGI_APPLICATION = "labelapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "labelapp.roles.role_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT: the app's queries are short, and compiling one (30 ms measured on an explorer page
    # at 11.7M cases) costs more than it saves; the bulk work (COPY, index builds) never uses it.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A local worker and the web server share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that a real worker process can see the test database too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dataset-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
for _folder in (VAR_DIR, ARTIFACTS_DIR, UPLOADS_DIR, STATIC_ROOT):
    _folder.mkdir(parents=True, exist_ok=True)

# Uploads up to this size import while the browser waits; larger ones go to a Celery worker.
IMPORT_INLINE_MAX_BYTES = env_int("IMPORT_INLINE_MAX_BYTES", 5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # larger uploads stream to a temporary file

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_dir = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    _broker_folders = ("queue", "processed", "control")
    for _folder in [_broker_dir / f for f in _broker_folders] + [VAR_DIR / "results"]:
        _folder.mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables under var/, not a "control" folder in the current directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": 6 * 3600}
)
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else f"file://{VAR_DIR / 'results'}",
)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Periodic tasks, sent by one beat process (`celery -A labelapp beat`, or a worker's -B): the
# reaper fails iterations whose worker died (no heartbeat for ITERATION_HEARTBEAT_STALE_S), so
# a dead worker's iteration is failed within stale + interval seconds with nobody looking.
ITERATION_REAP_INTERVAL_S = float(env_str("ITERATION_REAP_INTERVAL_S", "10"))
CELERY_BEAT_SCHEDULE = {
    "iteration-reap-stale": {
        "task": "labelapp.iteration_reap_stale",
        "schedule": ITERATION_REAP_INTERVAL_S,
        # A busy single worker must not find a pile of them afterwards.
        "options": {"expires": ITERATION_REAP_INTERVAL_S},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = env_str(
    "CELERY_BEAT_SCHEDULE_FILENAME", str(VAR_DIR / "celerybeat-schedule")
)

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "labelapp.api.pagination.PagePagination",
    # Bodies are JSON (the schema says so; uploads declare their multipart parser themselves).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "labelapp.api.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "labelapp.api.throttling.AnonThrottle",
        "labelapp.api.throttling.UserThrottle",
        "labelapp.api.throttling.ScopedThrottle",
    ],
    # Per user (per IP for anonymous callers); the scoped ones guard the expensive endpoints.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "60/min"),
        "user": env_str("API_THROTTLE_USER", "6000/hour"),
        "import": env_str("API_THROTTLE_IMPORT", "30/hour"),
        "scoring": env_str("API_THROTTLE_SCORING", "120/min"),
        "download": env_str("API_THROTTLE_DOWNLOAD", "60/hour"),
        "labels": env_str("API_THROTTLE_LABELS", "1200/min"),
        "auth": env_str("API_THROTTLE_AUTH", "30/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PU workbench API",
    "DESCRIPTION": "Active PU-learning workbench: datasets, cases, labels, iterations, models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # labelapp.api.urls.IdConverter: ids that fit a database row.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    "ENUM_NAME_OVERRIDES": {
        "DatasetStatusEnum": "labelapp.models.Dataset.Status",
        "IterationStatusEnum": "labelapp.models.Iteration.Status",
        "BatchItemStatusEnum": "labelapp.models.BatchItem.Status",
        "PoolStateEnum": "labelapp.models.PoolState",
        "LabelAnswerEnum": "labelapp.models.Label.Answer",
        "LabelViaEnum": "labelapp.models.Label.Via",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- The loop: iteration heartbeats (a worker silent for longer is presumed dead) -------------
ITERATION_HEARTBEAT_INTERVAL_S = float(env_str("ITERATION_HEARTBEAT_INTERVAL_S", "2"))
ITERATION_HEARTBEAT_STALE_S = float(env_str("ITERATION_HEARTBEAT_STALE_S", "30"))
# Workers' beacons (labelapp/workers.py): how the web side and the shell know a worker is up.
WORKER_BEACON_INTERVAL_S = float(env_str("WORKER_BEACON_INTERVAL_S", "5"))
WORKER_BEACON_STALE_S = float(env_str("WORKER_BEACON_STALE_S", "20"))
WORKER_NO_CONSUMER_GRACE_S = float(env_str("WORKER_NO_CONSUMER_GRACE_S", "30"))
# Threads of LightGBM and torch in an iteration (0: the libraries' defaults, all cores).
LOOP_THREADS = env_int("LOOP_THREADS", 0)
# Niceness a worker takes on when it runs an iteration: pages stay responsive while it trains.
LOOP_WORKER_NICE = env_int("LOOP_WORKER_NICE", 10)
# Chunked work of an iteration, shared with helper tasks on other workers (0: the code's default).
LOOP_SCORE_CHUNK_ROWS = env_int("LOOP_SCORE_CHUNK_ROWS", 0)
LOOP_EMBED_CHUNK_EVENTS = env_int("LOOP_EMBED_CHUNK_EVENTS", 0)
LOOP_EMBED_HELPERS = env_int("LOOP_EMBED_HELPERS", 4)
# The model page's map of the cases, computed by a worker after each iteration (issue 16).
CASE_MAP_AFTER_ITERATION = env_bool("CASE_MAP_AFTER_ITERATION", True)

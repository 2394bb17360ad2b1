"""Shepherd's settings. Every knob is an environment variable with a default that runs locally."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from shepherd_rpc.settings import env_bool, env_float, env_int, env_str


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated variable as a list."""
    raw = os.environ.get(name)
    return default if raw is None else [item.strip() for item in raw.split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SHEPHERD_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-only-key-set-DJANGO_SECRET_KEY-in-production")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_extensions",
    "pipeline",
]

MIDDLEWARE = [
    "pipeline.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shepherd.urls"
WSGI_APPLICATION = "shepherd.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite with no setup; PostgreSQL (or anything dj-database-url knows) when DATABASE_URL is set.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'shepherd.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads of the daemon write at once: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # Write-ahead logging: readers never block the writer, and a commit costs a quarter of what it
    # does with the rollback journal; measured to double the daemon's steps/s (docs/bench-orchestrator.md).
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so the daemon and workers that tests start as processes see it too.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-shepherd.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Bodies above this size are refused with 413 before they are parsed.
SHEPHERD_MAX_BODY_BYTES = env_int("SHEPHERD_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = SHEPHERD_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["pipeline.permissions.WritesNeedToken"],
    "DEFAULT_PARSER_CLASSES": ["pipeline.parsers.BoundedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "pipeline.pagination.Pagination",
    "PAGE_SIZE": env_int("SHEPHERD_PAGE_SIZE", 50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "pipeline.api_errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Shepherd API",
    "DESCRIPTION": "Submit data pipelines, follow their runs, and inspect the registered projects.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Whether reading pipelines and projects needs a token too (writes always do).
SHEPHERD_READS_NEED_TOKEN = env_bool("SHEPHERD_READS_NEED_TOKEN", False)

# The broker and the names of everything Shepherd declares on it.
SHEPHERD_BROKER_URL = env_str("SHEPHERD_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
SHEPHERD_AMQP_PREFIX = env_str("SHEPHERD_AMQP_PREFIX", "shepherd")
SHEPHERD_QUORUM_QUEUES = env_bool("SHEPHERD_QUORUM_QUEUES", False)
# How long the API waits for the broker before leaving a pipeline for the sweep.
SHEPHERD_PUBLISH_TIMEOUT = env_float("SHEPHERD_PUBLISH_TIMEOUT", 3.0)

# The orchestrator.
SHEPHERD_DAEMON_NAME = env_str("SHEPHERD_DAEMON_NAME", "default")
SHEPHERD_CONCURRENCY = env_int("SHEPHERD_CONCURRENCY", 16)
SHEPHERD_STEP_WAIT_LIMIT = env_float("SHEPHERD_STEP_WAIT_LIMIT", 60.0)
SHEPHERD_RETRY_BACKOFF = env_float("SHEPHERD_RETRY_BACKOFF", 2.0)
SHEPHERD_SWEEP_INTERVAL = env_float("SHEPHERD_SWEEP_INTERVAL", 30.0)
SHEPHERD_PIPELINE_LEASE = env_float("SHEPHERD_PIPELINE_LEASE", 20.0)
SHEPHERD_SHUTDOWN_GRACE = env_float("SHEPHERD_SHUTDOWN_GRACE", 30.0)
# Mirror every run in Prefect (the server at PREFECT_API_URL, or a temporary local one).
SHEPHERD_PREFECT = env_bool("SHEPHERD_PREFECT", True)
# Threads sending updates to Prefect (each pipeline's updates stay on one, in order).
SHEPHERD_PREFECT_THREADS = env_int("SHEPHERD_PREFECT_THREADS", 4, minimum=1)
# The mirror is background work: at a lower CPU priority it catches up when pipelines leave CPU free.
SHEPHERD_PREFECT_NICE = env_int("SHEPHERD_PREFECT_NICE", 10, minimum=0)

LOG_LEVEL = env_str("SHEPHERD_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "pika": {"level": "WARNING"},
    },
}

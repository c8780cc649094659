"""Django settings for idlevm, read from environment variables (see README, "Settings")."""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from suspend_service.env import (
    database,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    secret_key,
)

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("IDLEVM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = secret_key(DEBUG, VAR_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "idlevm.inventory",
    "idlevm.rules",
    "idlevm.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "suspend_service.urls"
WSGI_APPLICATION = "suspend_service.wsgi.application"

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

DATABASES = {
    "default": database(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'idlevm.sqlite3'}")),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- OpenNebula ---------------------------------------------------------------------------
ONE_XMLRPC = env_str("ONE_XMLRPC", "http://localhost:2633/RPC2")
# Path of the file holding "user:password"; empty means OpenNebula's own lookup order.
ONE_AUTH = env_str("ONE_AUTH", "")
ONE_CONNECT_TIMEOUT = env_float("ONE_CONNECT_TIMEOUT", 5.0, minimum=0.1)
ONE_TIMEOUT = env_float("ONE_TIMEOUT", 60.0, minimum=0.1)
ONE_PAGE_SIZE = env_int("ONE_PAGE_SIZE", 2000, minimum=100)
# A cycle whose OpenNebula calls take longer than this records a "slow" error.
ONE_SLOW_SECONDS = env_float("ONE_SLOW_SECONDS", 30.0, minimum=0.1)

# --- Idle data ----------------------------------------------------------------------------
# Idle data older than this counts as missing: missing data never means idle.
IDLE_STALE_SECONDS = env_int("IDLE_STALE_SECONDS", 900, minimum=1)
# IdleSample rows older than this are pruned at the end of each cycle.
IDLE_SAMPLE_RETENTION_DAYS = env_int("IDLE_SAMPLE_RETENTION_DAYS", 14, minimum=1)
# Default pause between cycles of `suspend_service --loop`.
SUSPEND_SERVICE_INTERVAL = env_int("SUSPEND_SERVICE_INTERVAL", 300, minimum=1)

# --- Rules and actions --------------------------------------------------------------------
# Global dry run: rules are evaluated and recorded, nothing is sent to OpenNebula.
RULES_DRY_RUN = env_bool("RULES_DRY_RUN", False)
# The blast-radius limit: real actions per cycle, all rules together, as a count and as a
# share of the running VMs (rounded up). More than that: no action at all that cycle.
MAX_ACTIONS_PER_CYCLE = env_int("MAX_ACTIONS_PER_CYCLE", 20, minimum=0)
MAX_ACTIONS_PERCENT = env_float("MAX_ACTIONS_PERCENT", 10.0, minimum=0.0)
if MAX_ACTIONS_PERCENT > 100:
    raise ImproperlyConfigured(f"MAX_ACTIONS_PERCENT={MAX_ACTIONS_PERCENT:g} is above 100")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"idlevm": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")}},
}

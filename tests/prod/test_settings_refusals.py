"""prefloop.settings.production refuses to load with unsafe values, naming the variable and the fix.

Each case imports the settings module in a fresh interpreter with an otherwise valid environment
(nothing connects to a database or Redis at import time, so these run on the SQLite suite too).
"""
from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from tests.prod.server import ROOT, production_env

VALID = {"DATABASE_URL": "postgres://prefloop@127.0.0.1:5432/prefloop", "REDIS_URL": "redis://127.0.0.1:6379/0"}


def load_production_settings(tmp_path, **overrides: str | None) -> subprocess.CompletedProcess:
    env = production_env(database=VALID["DATABASE_URL"], redis=VALID["REDIS_URL"], workdir=tmp_path)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    code = "import prefloop.settings.production as s; print('loaded', s.DEBUG, s.ALLOWED_HOSTS)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_valid_environment_loads(tmp_path):
    done = load_production_settings(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded False ['127.0.0.1']"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DJANGO_SECRET_KEY": None}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
        ({"DJANGO_SECRET_KEY": "prefloop-embedded-default-not-for-production"}, "DJANGO_SECRET_KEY is the development default"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + secrets.token_urlsafe(48)}, "DJANGO_SECRET_KEY is the development default"),
        ({"DJANGO_SECRET_KEY": "s3cr3t-but-short"}, "DJANGO_SECRET_KEY is too weak (16 characters"),
        ({"DJANGO_SECRET_KEY": "ab" * 40}, "DJANGO_SECRET_KEY is too weak (80 characters, 2 distinct"),
        ({"DJANGO_DEBUG": "1"}, "DJANGO_DEBUG is on"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG is on"),
        ({"DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS may not contain a wildcard (*)"),
        ({"DJANGO_ALLOWED_HOSTS": "prefloop.example.org,*"}, "DJANGO_ALLOWED_HOSTS may not contain a wildcard (*)"),
        ({"DJANGO_ALLOWED_HOSTS": None}, "DJANGO_ALLOWED_HOSTS is not set"),
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "sqlite:///prefloop.sqlite3"}, "DATABASE_URL must be a PostgreSQL URL"),
        ({"REDIS_URL": None}, "REDIS_URL is not set"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_production_settings_refuse_to_load(tmp_path, overrides, message):
    done = load_production_settings(tmp_path, **overrides)
    assert done.returncode != 0 and "loaded" not in done.stdout
    assert "ImproperlyConfigured: prefloop.settings.production: " + message in done.stderr, done.stderr


def test_a_refused_setting_stops_manage_py_before_any_command_runs(tmp_path):
    env = production_env(database=VALID["DATABASE_URL"], redis=VALID["REDIS_URL"], workdir=tmp_path, DJANGO_DEBUG="1")
    done = subprocess.run([sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DJANGO_DEBUG is on" in done.stderr
    assert "Operations to perform" not in done.stdout

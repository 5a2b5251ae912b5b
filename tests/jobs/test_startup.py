"""The job system's modules (and the Celery app) load without torch."""

import subprocess
import sys


def test_job_modules_and_celery_app_do_not_import_torch():
    code = (
        "import django, os, sys, importlib;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'prefloop.settings');"
        "django.setup();"
        "[importlib.import_module(f'prefloop.jobs.{m}') for m in ('models', 'admin', 'api', 'urls', 'routing',"
        " 'consumers', 'selectors', 'services', 'context', 'registry', 'tasks', 'selftest')];"
        "import prefloop.celery, prefloop.urls, prefloop.asgi;"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules);"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

"""Django start-up stays small: no torch, transformers or trl in a web worker."""

import importlib
import subprocess
import sys


def test_django_modules_do_not_import_torch():
    code = (
        "import django, os, sys, importlib;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'prefloop.settings');"
        "django.setup();"
        "[importlib.import_module(f'{app}.{m}') for app in ('annotate', 'rewards', 'training', 'frontend')"
        " for m in ('models', 'admin', 'urls', 'api', 'views', 'selectors', 'services')"
        " if importlib.util.find_spec(f'{app}.{m}')];"
        "import prefloop.urls, prefloop.asgi;"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules);"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert importlib.util.find_spec("annotate") is not None

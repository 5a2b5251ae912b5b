"""WSGI entry point (gunicorn in benchmarks and production HTTP workers)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prefloop.settings")
application = get_wsgi_application()

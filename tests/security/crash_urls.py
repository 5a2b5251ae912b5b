"""A test-only URL conf: the real routes plus views that crash with secrets in their exceptions."""

from django.db import DatabaseError
from django.urls import path
from rest_framework.views import APIView

from prefloop.urls import urlpatterns as real_urlpatterns

SECRET_SQL = 'SELECT "password" FROM "annotate_user" WHERE "username" = \'admin\''


class CrashingApi(APIView):
    def get(self, request):
        raise DatabaseError(f"syntax error at or near: {SECRET_SQL}")


def crashing_page(request):
    raise ValueError(f"Traceback leak: {SECRET_SQL}")


urlpatterns = [path("api/test-crash/", CrashingApi.as_view()), path("test-crash/", crashing_page), *real_urlpatterns]

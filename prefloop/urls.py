"""Top-level URLs: admin, the machine API with its OpenAPI schema, and the web UI."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from prefloop.accounts.api import obtain_auth_token  # DRF's, behind the login lockout

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/jobs/", include("prefloop.jobs.urls")),
    path("api/", include("annotate.urls")),
    path("api/", include("rewards.urls")),
    path("api/", include("training.urls")),
    path("api/", include("prefloop.webhooks.api_urls")),
    path("api/", include("judging.urls")),
    path("", include("rewards.page_urls")),
    path("", include("training.page_urls")),
    path("", include("prefloop.webhooks.urls")),
    path("", include("judging.page_urls")),
    path("", include("frontend.urls")),
]

# A form post over PREFLOOP_MAX_REQUEST_BYTES answers 413, not 400 (prefloop/request_limits.py).
handler400 = "prefloop.request_limits.bad_request"

"""`POST /api/auth/token/`: DRF's token view behind the login lockout (429 while locked)."""

from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from prefloop.accounts import lockout


class ObtainAuthTokenApi(ObtainAuthToken):
    """User name + password -> token; answers 429 with Retry-After while the lockout holds."""

    def post(self, request, *args, **kwargs):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        ip = lockout.client_ip(request)
        if isinstance(username, str) and username and lockout.is_locked(username=username, ip=ip):
            return self._locked()
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            if isinstance(username, str) and username and lockout.is_locked(username=username, ip=ip):
                return self._locked()  # this failure was the one that locked it
            raise

    @staticmethod
    def _locked() -> Response:
        seconds = lockout.policy().lockout_seconds
        return Response(
            {"error": "locked", "detail": "too many failed sign-ins; try again later"},
            status=429,
            headers={"Retry-After": str(seconds)},
        )


obtain_auth_token = ObtainAuthTokenApi.as_view()

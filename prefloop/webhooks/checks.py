"""System check: the webhook allowlist settings parse (a typo fails at start-up, not at the first send)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def webhook_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from prefloop.webhooks.net import parse_networks

    errors = []
    try:
        parse_networks(getattr(settings, "PREFLOOP_WEBHOOK_ALLOWED_CIDRS", []))
    except ValueError as exc:
        errors.append(Error(str(exc), id="webhooks.E001"))
    hosts = getattr(settings, "PREFLOOP_WEBHOOK_ALLOWED_HOSTS", ["*"])
    if isinstance(hosts, str) or not all(isinstance(h, str) and h for h in hosts):
        errors.append(Error("PREFLOOP_WEBHOOK_ALLOWED_HOSTS must be a list of host names", id="webhooks.E002"))
    return errors

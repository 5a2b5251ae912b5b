"""Job handler of `webhooks.deliver` (registered in apps.py): one delivery attempt."""

from __future__ import annotations

from typing import Any

from prefloop.webhooks.services import deliver as deliver_attempt


def deliver(job: Any, ctx: Any) -> dict:
    result = deliver_attempt(int(job.params["delivery_id"]))
    ctx.log(
        f"delivery {result.get('delivery_id')}: {result.get('status') or result.get('skipped')} {result.get('error') or ''}"
    )
    return result

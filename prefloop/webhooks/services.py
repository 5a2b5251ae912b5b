"""Webhooks: configure them, emit events, deliver them (signed, retried with backoff).

Other apps never import this module: their signals reach `receivers.py`, which calls `emit`.
`emit` does nothing inside the caller's transaction: it registers an on-commit callback that
writes the delivery rows and queues their jobs, and that logs (never raises) any error, so an
event can neither slow nor break the request or job that caused it. See docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotate.models import Project
from prefloop.core.errors import PrefloopError
from prefloop.webhooks import net
from prefloop.webhooks.events import EVENTS, PING
from prefloop.webhooks.models import Delivery, Webhook

logger = logging.getLogger(__name__)

DELIVER_JOB = "webhooks.deliver"
SIGNATURE_HEADER = "X-Prefloop-Signature"
MAX_WEBHOOKS_PER_PROJECT = 20
EXCERPT_CHARS = 1000


class InvalidWebhook(PrefloopError):
    code = "invalid_webhook"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


# --- settings ------------------------------------------------------------------------------------
def rules() -> net.Rules:
    """The SSRF rules from settings (PREFLOOP_WEBHOOK_*)."""
    return net.Rules(
        allowed_hosts=tuple(getattr(settings, "PREFLOOP_WEBHOOK_ALLOWED_HOSTS", ["*"])),
        allowed_networks=net.parse_networks(getattr(settings, "PREFLOOP_WEBHOOK_ALLOWED_CIDRS", [])),
        timeout=float(getattr(settings, "PREFLOOP_WEBHOOK_TIMEOUT", 10)),
        max_response_bytes=int(getattr(settings, "PREFLOOP_WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024)),
        max_redirects=int(getattr(settings, "PREFLOOP_WEBHOOK_MAX_REDIRECTS", 3)),
    )


def max_attempts() -> int:
    return max(1, min(20, int(getattr(settings, "PREFLOOP_WEBHOOK_MAX_ATTEMPTS", 6))))


def backoff_seconds(attempt: int) -> float:
    """Wait before attempt `attempt + 1`: base · 2^(attempt − 1), capped (30 s, 60 s, 120 s … ≤ 1 h)."""
    base = float(getattr(settings, "PREFLOOP_WEBHOOK_RETRY_BASE_SECONDS", 30))
    cap = float(getattr(settings, "PREFLOOP_WEBHOOK_RETRY_MAX_SECONDS", 3600))
    return min(cap, base * 2 ** max(0, attempt - 1))


# --- configuration -------------------------------------------------------------------------------
def new_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def validate(*, url: str, events: list[str], milestone_every: int | None = None) -> tuple[str, list[str]]:
    """The URL (checked against the rules, without DNS: that happens on every send) and the events."""
    url = (url or "").strip()
    if not url:
        raise InvalidWebhook("url", "required")
    try:
        net.check_target(net.parse_target(url), rules())
    except net.TargetRefused as exc:
        raise InvalidWebhook("url", str(exc)) from None
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidWebhook("events", f"unknown event(s) {unknown}; known: {sorted(EVENTS)}")
    if not events:
        raise InvalidWebhook("events", "choose at least one event")
    if milestone_every is not None and not 1 <= milestone_every <= 1_000_000:
        raise InvalidWebhook("milestone_every", "must be between 1 and 1000000")
    return url, [e for e in EVENTS if e in events]


def webhook_create(
    *,
    project: Project,
    url: str,
    events: list[str],
    name: str = "",
    active: bool = True,
    milestone_every: int = 100,
    user: Any = None,
) -> Webhook:
    url, events = validate(url=url, events=events, milestone_every=milestone_every)
    if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS_PER_PROJECT:
        raise InvalidWebhook("url", f"a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks")
    creator = user if getattr(user, "is_authenticated", False) else None
    return Webhook.objects.create(
        project=project,
        url=url,
        events=events,
        name=name.strip()[:100],
        active=active,
        milestone_every=milestone_every,
        secret=new_secret(),
        created_by=creator,
        last_milestone=_judgements(project.pk),
    )


def webhook_update(
    *, webhook: Webhook, url: str, events: list[str], name: str = "", active: bool = True, milestone_every: int = 100
) -> Webhook:
    url, events = validate(url=url, events=events, milestone_every=milestone_every)
    webhook.url, webhook.events, webhook.name, webhook.active = (url, events, name.strip()[:100], active)
    webhook.milestone_every = milestone_every
    webhook.save(update_fields=["url", "events", "name", "active", "milestone_every", "updated_at"])
    return webhook


def webhook_rotate_secret(*, webhook: Webhook) -> str:
    webhook.secret = new_secret()
    webhook.save(update_fields=["secret", "updated_at"])
    return webhook.secret


def webhook_delete(*, webhook: Webhook) -> None:
    webhook.delete()  # its deliveries go with it; a queued attempt finds nothing and stops


def send_test(*, webhook: Webhook) -> Delivery:
    """A `ping` delivery to this webhook now (active or not), through the same queue and rules."""
    body = _body(
        webhook.project,
        PING,
        {"webhook_id": webhook.pk, "message": "prefloop test delivery"},
        event_id=f"evt_{uuid.uuid4().hex}",
        created_at=timezone.now(),
    )
    with transaction.atomic():
        delivery = _create_delivery(webhook, PING, body)
        _queue(delivery, delay=0)
    return delivery


# --- emitting ------------------------------------------------------------------------------------
def emit(
    project: Project | int, event: str, data: dict, *, key: str | None = None, webhook_ids: list[int] | None = None
) -> None:
    """Send `event` with `data` to the project's active webhooks that subscribe to it, once the
    current transaction commits (at once outside one). `key` makes the event id deterministic, so
    the same event emitted twice is delivered once; `webhook_ids` narrows the recipients."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    project_id = project if isinstance(project, int) else project.pk
    created_at = timezone.now()
    transaction.on_commit(partial(_emit_now, project_id, event, data, key, webhook_ids, created_at))


def _emit_now(
    project_id: int, event: str, data: dict, key: str | None, webhook_ids: list[int] | None, created_at: Any
) -> None:
    try:
        hooks = [
            h
            for h in Webhook.objects.filter(project_id=project_id, active=True).select_related("project")
            if event in h.events and (webhook_ids is None or h.pk in webhook_ids)
        ]
        event_id = _event_id(project_id, event, key)
        for hook in hooks:
            body = _body(hook.project, event, data, event_id=event_id, created_at=created_at)
            try:
                with transaction.atomic():
                    delivery = _create_delivery(hook, event, body)
                    _queue(delivery, delay=0)
            except IntegrityError:
                logger.info("webhook %s: event %s already delivered", hook.pk, event_id)
    except Exception:
        logger.exception("webhook event %s of project %s could not be queued", event, project_id)


def _event_id(project_id: int, event: str, key: str | None) -> str:
    if key is None:
        return f"evt_{uuid.uuid4().hex}"
    return "evt_" + hashlib.sha256(f"{project_id}:{event}:{key}".encode()).hexdigest()[:32]


def _body(project: Project, event: str, data: dict, *, event_id: str, created_at: Any) -> str:
    envelope = {
        "id": event_id,
        "event": event,
        "created_at": created_at,
        "project": {"id": project.pk, "name": project.name},
        "data": data,
    }
    text = json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    limit = int(getattr(settings, "PREFLOOP_WEBHOOK_MAX_BODY_BYTES", 64 * 1024))
    if len(text.encode()) > limit:
        raise ValueError(f"webhook body of {event} is over {limit} bytes")
    return text


def _create_delivery(webhook: Webhook, event: str, body: str) -> Delivery:
    delivery = Delivery.objects.create(
        webhook=webhook,
        event=event,
        event_id=json.loads(body)["id"],
        body=body,
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        max_attempts=max_attempts(),
    )
    _prune_log(webhook)
    return delivery


def _prune_log(webhook: Webhook) -> None:
    """Keep the newest PREFLOOP_WEBHOOK_LOG_KEEP finished deliveries of a webhook (the log is bounded)."""
    keep = max(1, int(getattr(settings, "PREFLOOP_WEBHOOK_LOG_KEEP", 500)))
    finished = Delivery.objects.filter(webhook=webhook).exclude(status__in=Delivery.OPEN).order_by("-id")
    old = list(finished.values_list("id", flat=True)[keep : keep + 1000])
    if old:
        Delivery.objects.filter(pk__in=old).delete()


def sign(secret: str, body: bytes) -> str:
    """The X-Prefloop-Signature value: "sha256=" + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- delivering ----------------------------------------------------------------------------------
def deliver(delivery_id: int) -> dict:
    """One attempt (the job handler's body): send, record, then succeed, schedule a retry or give up."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status not in Delivery.OPEN:
        return {"skipped": "gone" if delivery is None else delivery.status}
    attempt = delivery.attempts + 1
    now = timezone.now()
    # Compare-and-set on the attempt count: a job delivered twice sends once.
    if not Delivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts, status__in=Delivery.OPEN).update(
        attempts=F("attempts") + 1, last_attempt_at=now, next_attempt_at=None
    ):
        return {"skipped": "attempt already taken"}
    if not delivery.webhook.active and delivery.event != PING:
        return _finish(delivery, attempt, Delivery.Status.FAILED, error="the webhook was deactivated")
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "prefloop-webhooks/1",
        "X-Prefloop-Event": delivery.event,
        "X-Prefloop-Event-Id": delivery.event_id,
        "X-Prefloop-Delivery": str(delivery.pk),
        "X-Prefloop-Attempt": str(attempt),
        "X-Prefloop-Timestamp": str(int(time.time())),
        SIGNATURE_HEADER: sign(delivery.webhook.secret, body),
    }
    try:
        answer = net.post(delivery.webhook.url, body, headers, rules())
    except net.TargetRefused as exc:
        return _finish(delivery, attempt, Delivery.Status.FAILED, error=f"refused: {exc}")
    except net.DeliveryError as exc:
        return _retry_or_fail(delivery, attempt, error=str(exc))
    excerpt = answer.body[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    fields: dict[str, Any] = {"code": answer.status, "excerpt": excerpt, "duration_ms": answer.elapsed_ms}
    if 200 <= answer.status < 300:
        return _finish(delivery, attempt, Delivery.Status.SUCCEEDED, **fields)
    if 300 <= answer.status < 400:
        where = answer.headers.get("location", "")
        return _finish(
            delivery,
            attempt,
            Delivery.Status.FAILED,
            error=f"HTTP {answer.status} redirect to {where!r} not followed (only 307/308 are)",
            **fields,
        )
    if answer.status in (408, 425, 429) or answer.status >= 500:
        return _retry_or_fail(delivery, attempt, error=f"HTTP {answer.status}", **fields)
    return _finish(delivery, attempt, Delivery.Status.FAILED, error=f"HTTP {answer.status} (not retried)", **fields)


def _retry_or_fail(delivery: Delivery, attempt: int, *, error: str, **fields: Any) -> dict:
    if attempt >= delivery.max_attempts:
        return _finish(
            delivery, attempt, Delivery.Status.FAILED, error=f"{error}; gave up after {attempt} attempts", **fields
        )
    delay = backoff_seconds(attempt)
    result = _finish(
        delivery,
        attempt,
        Delivery.Status.RETRYING,
        error=error,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        **fields,
    )
    _queue(delivery, delay=delay)
    return {**result, "retry_in_s": delay}


def _finish(
    delivery: Delivery,
    attempt: int,
    status: str,
    *,
    error: str = "",
    code: int | None = None,
    excerpt: str = "",
    duration_ms: int | None = None,
    next_attempt_at: Any = None,
) -> dict:
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=status,
        last_error=error[:2000],
        last_status_code=code,
        response_excerpt=excerpt,
        duration_ms=duration_ms,
        next_attempt_at=next_attempt_at,
        delivered_at=now if status == Delivery.Status.SUCCEEDED else None,
    )
    return {"delivery_id": delivery.pk, "attempt": attempt, "status": status, "status_code": code, "error": error[:500]}


def _queue(delivery: Delivery, *, delay: float) -> None:
    """Queue the next attempt as a job: at once (enqueue_job), or after `delay` seconds."""
    from prefloop.webhooks import dispatch

    with transaction.atomic():  # the job is dispatched when this block commits, after job_id is set
        job = dispatch.enqueue_delivery_job(delivery.pk, delay=delay, kind=DELIVER_JOB)
        Delivery.objects.filter(pk=delivery.pk).update(job_id=job.pk)
    delivery.job_id = job.pk


def fail_open_deliveries_of(job_id: int, reason: str) -> int:
    """A delivery job that crashed or was reaped: its delivery is failed, never left open."""
    return Delivery.objects.filter(job_id=job_id, status__in=Delivery.OPEN).update(
        status=Delivery.Status.FAILED, last_error=reason[:2000], next_attempt_at=None
    )


def _judgements(project_id: int) -> int:
    from annotate.models import Assignment

    return Assignment.objects.filter(project_id=project_id, state=Assignment.State.DONE).count()


def check_vote_milestones(project_id: int) -> None:
    """labeling.votes_milestone: for each subscribed webhook whose next multiple of N has been
    reached, one event with the highest multiple reached (a compare-and-set on last_milestone, so
    concurrent votes announce each milestone once)."""
    from prefloop.webhooks.events import VOTES_MILESTONE

    hooks = [h for h in Webhook.objects.filter(project_id=project_id, active=True) if VOTES_MILESTONE in h.events]
    if not hooks:
        return
    count = _judgements(project_id)
    for hook in hooks:
        milestone = count // hook.milestone_every * hook.milestone_every
        if milestone <= hook.last_milestone:
            continue
        if Webhook.objects.filter(pk=hook.pk, last_milestone=hook.last_milestone).update(last_milestone=milestone):
            emit(
                project_id,
                VOTES_MILESTONE,
                {"judgements": count, "milestone": milestone, "every": hook.milestone_every},
                key=f"{hook.pk}:{milestone}",
                webhook_ids=[hook.pk],
            )

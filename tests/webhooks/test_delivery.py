"""Deliveries to a real receiver on 127.0.0.1: signed bodies, retries with backoff, and the SSRF refusals."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import User
from prefloop.jobs.models import Job
from prefloop.webhooks import net, services
from prefloop.webhooks.models import Delivery, Webhook
from tests.factories import make_project, make_user
from tests.webhooks.receiver import signature_ok

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def project():
    return make_project(name="hooked", researchers=[make_user("res-hook", role=User.Role.RESEARCHER)])


def hook(project, url: str, events=("job.succeeded",)) -> Webhook:
    return services.webhook_create(project=project, url=url, events=list(events))


def test_a_test_delivery_is_signed_with_the_secret_and_verified_by_the_receiver(project, receiver):
    r = receiver()
    webhook = hook(project, r.url())
    delivery = services.send_test(webhook=webhook)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    [got] = r.received
    assert signature_ok(webhook.secret, got.body, got.headers["x-prefloop-signature"])
    assert not signature_ok("whsec_wrong", got.body, got.headers["x-prefloop-signature"])
    body = got.json
    assert body["event"] == "ping" and body["project"] == {"id": project.pk, "name": "hooked"}
    assert got.headers["x-prefloop-event-id"] == body["id"] == delivery.event_id
    assert got.headers["x-prefloop-event"] == "ping" and got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["x-prefloop-timestamp"]) - timezone.now().timestamp()) < 300
    assert got.body.decode() == delivery.body and hashlib.sha256(got.body).hexdigest() == delivery.body_sha256


def test_a_500_is_retried_with_the_same_signed_body_until_it_succeeds(project, receiver, settings):
    r = receiver([(500, {}, b"down"), (503, {}, b"still down")])
    webhook = hook(project, r.url())
    delivery = services.send_test(webhook=webhook)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "succeeded",
        3,
        200,
        "",
    )
    assert [g.headers["x-prefloop-attempt"] for g in r.received] == ["1", "2", "3"]
    assert len({g.body for g in r.received}) == 1 and len({g.headers["x-prefloop-event-id"] for g in r.received}) == 1
    assert all(signature_ok(webhook.secret, g.body, g.headers["x-prefloop-signature"]) for g in r.received)
    # one job per attempt, each through the job queue
    assert Job.objects.filter(kind="webhooks.deliver", status="succeeded").count() == 3


def test_backoff_doubles_up_to_the_cap(settings):
    settings.PREFLOOP_WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.PREFLOOP_WEBHOOK_RETRY_MAX_SECONDS = 200
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 200, 200]


def test_on_the_db_queue_a_retry_waits_for_its_backoff(project, receiver, settings):
    from django_tasks_db.models import DBTaskResult

    settings.PREFLOOP_JOB_BACKEND = "db"
    settings.PREFLOOP_WEBHOOK_RETRY_BASE_SECONDS = 45
    r = receiver([(500, {}, b"down")])
    delivery = services.send_test(webhook=hook(project, r.url()))
    first = DBTaskResult.objects.get()  # the first attempt: queued to run at once
    from prefloop.jobs.services import run_job

    run_job(delivery.job_id)  # what a db_worker does with the first task
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("retrying", 1, 500)
    retry = DBTaskResult.objects.exclude(pk=first.pk).get()
    assert retry.args_kwargs["args"] == [delivery.job_id]
    expected = delivery.last_attempt_at + timedelta(seconds=45)
    assert abs((retry.run_after - expected).total_seconds()) < 5
    assert abs((delivery.next_attempt_at - expected).total_seconds()) < 5


def test_attempts_are_bounded_and_a_4xx_is_not_retried(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_MAX_ATTEMPTS = 3
    r = receiver([(500, {}, b"")] * 5)
    delivery = services.send_test(webhook=hook(project, r.url()))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3) and "gave up after 3 attempts" in delivery.last_error
    assert len(r.received) == 3
    r2 = receiver([(401, {}, b"bad signature")])
    delivery = services.send_test(webhook=hook(project, r2.url()))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 401)
    assert delivery.response_excerpt == "bad signature" and len(r2.received) == 1


def test_a_receiver_that_is_down_is_retried_then_given_up(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_MAX_ATTEMPTS = 2
    r = receiver()
    url = r.url()
    r.close()  # nothing listens on that port any more
    delivery = services.send_test(webhook=hook(project, url))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 2, None)
    assert "ConnectionRefused" in delivery.last_error


def test_the_answer_is_read_only_up_to_the_bound(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_MAX_RESPONSE_BYTES = 4096
    r = receiver([(200, {}, b"x" * 1_000_000)] * 2)
    rules = services.rules()
    answer = net.post(r.url(), b"{}", {"Content-Type": "application/json"}, rules)
    assert answer.status == 200 and len(answer.body) == 4096
    delivery = services.send_test(webhook=hook(project, r.url()))
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and len(delivery.response_excerpt) == services.EXCERPT_CHARS


def test_a_slow_receiver_times_out_and_is_retried(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_TIMEOUT = 0.3
    settings.PREFLOOP_WEBHOOK_MAX_ATTEMPTS = 1
    r = receiver(delay=1.5)
    delivery = services.send_test(webhook=hook(project, r.url()))
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "no answer within 0.3 s" in delivery.last_error


# --- SSRF -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://127.0.0.2/hook", "loopback"),  # only 127.0.0.1 itself is allowed here
    ],
)
def test_private_loopback_link_local_and_other_addresses_are_refused(project, url, kind):
    with pytest.raises(services.InvalidWebhook) as refused:
        hook(project, url)
    assert refused.value.field == "url" and f"a {kind} address" in refused.value.message
    with pytest.raises(net.TargetRefused, match=kind):
        net.post(url, b"{}", {}, services.rules())
    assert not Webhook.objects.exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.org/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@example.org/", "credentials in the URL"),
        ("https:///nohost", "no host"),
        ("http://example.org:99999/", "not a valid URL"),
    ],
)
def test_only_plain_http_and_https_urls_are_accepted(project, url, message):
    with pytest.raises(services.InvalidWebhook, match=message):
        hook(project, url)


def test_a_stored_url_is_checked_again_at_send_time(project, receiver, settings):
    """An address allowed when the webhook was saved and refused since (settings changed) is not called."""
    r = receiver()
    webhook = hook(project, r.url())
    settings.PREFLOOP_WEBHOOK_ALLOWED_CIDRS = []
    delivery = services.send_test(webhook=webhook)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (
        "failed",
        1,
    ) and "127.0.0.1 is a loopback address" in delivery.last_error
    assert r.received == []


def test_a_hostname_that_resolves_to_loopback_is_refused_after_resolution(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_ALLOWED_CIDRS = []
    r = receiver()
    webhook = hook(project, r.url(host="localhost"))  # no DNS at save time: the name itself is fine
    delivery = services.send_test(webhook=webhook)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "refused: localhost resolves to" in delivery.last_error and "loopback address" in delivery.last_error
    assert r.received == []


def test_the_checked_address_is_the_one_connected_to_and_host_keeps_the_name(project, receiver, monkeypatch, settings):
    """One lookup per send (the connection uses its answer: no second lookup to rebind), and the
    receiver sees the URL's host name in Host."""
    settings.PREFLOOP_WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32", "::1/128"]
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counting(host, *args, **kwargs):
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    r = receiver()
    answer = net.post(r.url(host="localhost"), b"{}", {}, services.rules())
    # the name is looked up once; the connection's own getaddrinfo gets the checked address, a literal
    assert answer.status == 200 and lookups[0] == "localhost" and lookups[1:] in ([], ["127.0.0.1"], ["::1"])
    assert r.received[0].headers["host"] == f"localhost:{r.port}"


def test_the_host_allowlist_applies(project, settings, receiver):
    settings.PREFLOOP_WEBHOOK_ALLOWED_HOSTS = ["hooks.example.org", "*.internal.example"]
    with pytest.raises(services.InvalidWebhook, match="not in PREFLOOP_WEBHOOK_ALLOWED_HOSTS"):
        hook(project, "https://evil.example.com/")
    assert net.host_allowed("a.internal.example", services.rules())
    assert not net.host_allowed("internal.example.evil", services.rules())
    r = receiver()
    with pytest.raises(services.InvalidWebhook, match="127.0.0.1 is not in PREFLOOP_WEBHOOK_ALLOWED_HOSTS"):
        hook(project, r.url())


def test_a_redirect_to_a_private_address_is_refused(project, receiver):
    r = receiver([(307, {"Location": "http://10.0.0.1/steal"}, b"")])
    delivery = services.send_test(webhook=hook(project, r.url()))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert "refused: 10.0.0.1 is a private address" in delivery.last_error


def test_a_307_to_an_allowed_target_is_followed_and_checked_again(project, receiver):
    final = receiver()
    first = receiver([(307, {"Location": final.url("/moved")}, b"")])
    webhook = hook(project, first.url())
    delivery = services.send_test(webhook=webhook)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    [moved] = final.received
    assert moved.path == "/moved" and signature_ok(webhook.secret, moved.body, moved.headers["x-prefloop-signature"])


def test_other_redirects_are_not_followed(project, receiver):
    final = receiver()
    r = receiver([(302, {"Location": final.url()}, b"")])
    delivery = services.send_test(webhook=hook(project, r.url()))
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "302 redirect" in delivery.last_error and final.received == []


def test_a_deleted_webhook_stops_its_queued_attempts(project, receiver, settings):
    settings.PREFLOOP_JOB_BACKEND = "db"
    r = receiver()
    webhook = hook(project, r.url())
    delivery = services.send_test(webhook=webhook)
    job_id = delivery.job_id
    services.webhook_delete(webhook=webhook)
    from prefloop.jobs.services import run_job

    job = run_job(job_id)
    assert job.status == "succeeded" and job.result == {"skipped": "gone"} and r.received == []
    assert not Delivery.objects.exists()


def test_the_body_is_compact_sorted_json(project, receiver):
    r = receiver()
    services.send_test(webhook=hook(project, r.url()))
    body = r.received[0].body
    assert body == json.dumps(json.loads(body), separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def test_a_webhook_paused_after_the_event_sends_nothing_but_a_test_still_goes(project, receiver, settings):
    settings.PREFLOOP_JOB_BACKEND = "db"
    r = receiver()
    webhook = hook(project, r.url())
    services.emit(project, "job.succeeded", {"job": {"id": 1}})
    services.send_test(webhook=webhook)
    webhook.active = False
    webhook.save()
    from prefloop.jobs.services import run_job

    for delivery in Delivery.objects.order_by("id"):
        run_job(delivery.job_id)
    event, ping = Delivery.objects.order_by("id")
    assert (event.status, event.last_error) == ("failed", "the webhook was deactivated")
    assert ping.status == "succeeded" and [g.json["event"] for g in r.received] == ["ping"]


def test_a_delivery_whose_worker_died_is_failed_by_the_reaper(project, receiver, settings):
    from prefloop.jobs.services import reap_stale_jobs

    settings.PREFLOOP_JOB_BACKEND = "db"
    delivery = services.send_test(webhook=hook(project, receiver().url()))
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=delivery.job_id).update(status="running", started_at=long_ago, heartbeat_at=long_ago)
    assert reap_stale_jobs() == 1
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "worker stopped responding" in delivery.last_error


def test_the_log_keeps_the_newest_finished_deliveries(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_LOG_KEEP = 3
    webhook = hook(project, receiver().url())
    sent = [services.send_test(webhook=webhook).pk for _ in range(5)]
    assert sorted(Delivery.objects.values_list("id", flat=True)) == sent[-4:]  # 3 finished + the one just created
    services.send_test(webhook=webhook)
    assert Delivery.objects.count() == 4 and not Delivery.objects.filter(pk__in=sent[:2]).exists()


def test_a_bad_cidr_setting_fails_the_system_check(settings):
    from prefloop.webhooks.checks import webhook_settings

    assert webhook_settings() == []
    settings.PREFLOOP_WEBHOOK_ALLOWED_CIDRS = ["10.0.0.0/33"]
    [error] = webhook_settings()
    assert error.id == "webhooks.E001" and "'10.0.0.0/33'" in error.msg

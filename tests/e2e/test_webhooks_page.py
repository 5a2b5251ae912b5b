"""The Webhooks page in chromium: add a webhook (a refused address first), copy the secret shown
once, send a test to a real receiver on 127.0.0.1 that fails once then accepts, read the log;
screenshots at 1366 and 390 px."""

from __future__ import annotations

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from annotate.models import User
from prefloop.webhooks.models import Delivery, Webhook
from tests.e2e.helpers import sign_in
from tests.e2e.live import BrowserTestCase
from tests.factories import make_project, make_user
from tests.webhooks.receiver import Receiver, signature_ok

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1366, "height": 900}
NARROW = {"width": 390, "height": 844}


# Settings overridden for the class are in place when the live server process forks: jobs run at
# commit inside the server, and 127.0.0.1 (only) is an allowed target.
@override_settings(
    PREFLOOP_JOB_BACKEND="immediate", PREFLOOP_WEBHOOK_ALLOWED_CIDRS=["127.0.0.1/32"], PREFLOOP_WEBHOOK_TIMEOUT=5
)
class WebhooksPageTests(BrowserTestCase):
    def test_add_a_webhook_send_a_test_and_read_the_delivery_log(self):
        receiver = Receiver([(500, {}, b"busy")])
        self.addCleanup(receiver.close)
        researcher = make_user("res-hooks", role=User.Role.RESEARCHER)
        annotator = make_user("ann-hooks")
        project = make_project(name="Hooked project", researchers=[researcher], annotators=[annotator])

        page = self.new_page(DESKTOP)
        sign_in(page, self.live_server_url, researcher.username)
        page.goto(f"{self.live_server_url}/projects/{project.pk}/webhooks/")
        expect(page.get_by_role("link", name="Webhooks", exact=True)).to_have_attribute("aria-current", "page")
        form = page.locator("form.wh-new")
        form.get_by_label("Target URL").fill("http://169.254.169.254/latest/meta-data/")
        form.get_by_label("Name (optional)").fill("CI notifier")
        form.locator('input[value="job.failed"]').check()
        form.locator('input[value="round.state_changed"]').check()
        form.get_by_role("button", name="Add webhook").click()
        expect(page.locator("form.wh-new .field-error")).to_contain_text("link-local address")
        self.assertFalse(Webhook.objects.exists(), "nothing written for a refused address")
        form = page.locator("form.wh-new")
        self.assertTrue(form.locator('input[value="job.failed"]').is_checked(), "the choices survive the error")
        form.get_by_label("Target URL").fill(receiver.url("/prefloop"))
        form.get_by_role("button", name="Add webhook").click()
        secret = page.locator("#webhook-secret").input_value()
        webhook = Webhook.objects.get()
        self.assertEqual((secret, webhook.events), (webhook.secret, ["round.state_changed", "job.failed"]))
        page.screenshot(path=self.artifacts / "screenshots" / "webhooks-created-desktop.png", full_page=True)

        card = page.locator(f'[data-webhook="{webhook.pk}"]')
        card.get_by_role("button", name="Send test").click()
        expect(page.locator(".notice.ok")).to_contain_text("Test event queued")
        row = page.locator("#wh-log tbody tr").first
        expect(row).to_have_attribute("data-status", "succeeded")
        expect(row).to_contain_text("2/6")
        self.assertEqual([g.headers["x-prefloop-attempt"] for g in receiver.received], ["1", "2"])
        self.assertTrue(all(signature_ok(secret, g.body, g.headers["x-prefloop-signature"]) for g in receiver.received))
        self.assertNotIn(secret, page.content(), "the secret is not shown again")

        # A receiver that is down: every attempt is refused by the OS, the delivery gives up after six.
        gone = Receiver()
        closed_url = gone.url("/prefloop")
        gone.close()
        card.locator("summary", has_text="Edit").click()
        card.get_by_label("Target URL").fill(closed_url)
        card.get_by_role("button", name="Save webhook").click()
        expect(page.locator(".notice.ok")).to_contain_text("saved")
        page.locator(f'[data-webhook="{webhook.pk}"]').get_by_role("button", name="Send test").click()
        failed = page.locator("#wh-log tbody tr").first
        expect(failed).to_have_attribute("data-status", "failed")
        expect(failed).to_contain_text("gave up after 6 attempts")
        expect(failed).to_contain_text("6/6")
        self.assertEqual(len(receiver.received), 2)
        self.assertEqual(Delivery.objects.filter(status="failed").count(), 1)
        page.screenshot(path=self.artifacts / "screenshots" / "webhooks-log-desktop.png", full_page=True)

        phone = self.new_page(NARROW)
        sign_in(phone, self.live_server_url, researcher.username)
        phone.goto(f"{self.live_server_url}/projects/{project.pk}/webhooks/")
        self.assertTrue(phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))
        phone.screenshot(path=self.artifacts / "screenshots" / "webhooks-narrow.png", full_page=True)

        other = self.new_page(DESKTOP, fail_on_js_errors=False)
        sign_in(other, self.live_server_url, annotator.username)
        response = other.goto(f"{self.live_server_url}/projects/{project.pk}/webhooks/")
        self.assertEqual(response.status, 404)
        self.assertNotIn("CI notifier", other.content())

"""A real sentry-sdk (Python) program for leitstand's Sentry receiver tests.

Usage: python script.py <dsn> full|ratelimit

full: an exception with user, request, tags, contexts and breadcrumbs and
an attachment, a message, a transaction with a span, a log and a check-in.
ratelimit: three exceptions, each flushed, then a log and a check-in, so the
test can count what the SDK still sends after a 429.
"""
import sys

import sentry_sdk
from sentry_sdk.crons import capture_checkin
from sentry_sdk.crons.consts import MonitorStatus

dsn, mode = sys.argv[1], sys.argv[2]
sentry_sdk.init(
    dsn=dsn,
    release="probe@1.0.0",
    environment="research",
    server_name="probe-host",
    send_default_pii=True,
    traces_sample_rate=1.0,
    enable_logs=True,
    debug=False,
)


def add_request(event, hint):
    # A plain script has no web framework to fill in the request.
    event["request"] = {
        "url": "http://shop.example.com/checkout",
        "method": "POST",
        "query_string": "email=jane.doe%40example.com&token=abc",
        "headers": {"User-Agent": "Mozilla/5.0 probe", "Cookie": "sessionid=s3cr3t", "X-Forwarded-For": "198.51.100.7"},
        "data": {"card": "4111 1111 1111 1111", "password": "hunter2"},
    }
    return event


def charge(card, password="hunter2"):
    raise ValueError("failed to charge card %s for jane.doe@example.com" % card)


def full():
    sentry_sdk.set_user({"id": "u-1", "email": "jane.doe@example.com", "ip_address": "203.0.113.42", "username": "jdoe"})
    sentry_sdk.set_tag("customer_email", "jane.doe@example.com")
    sentry_sdk.set_context("billing", {"iban": "DE89370400440532013000", "api_key": "AKIAIOSFODNN7EXAMPLE"})
    sentry_sdk.add_breadcrumb(category="auth", message="login for jane.doe@example.com from 198.51.100.7",
                              data={"password": "hunter2"}, level="info")
    with sentry_sdk.start_transaction(op="task", name="checkout"):
        with sentry_sdk.start_span(op="db.query", name="SELECT * FROM users WHERE email = 'jane.doe@example.com'"):
            pass
        sentry_sdk.logger.info("user logged in from 198.51.100.7", attributes={"user.email": "jane.doe@example.com"})
        with sentry_sdk.new_scope() as scope:
            scope.add_event_processor(add_request)
            scope.add_attachment(bytes=b"contact jane.doe@example.com\nline2\n", filename="note.txt", content_type="text/plain")
            try:
                charge("4111111111111111")
            except Exception:
                sentry_sdk.capture_exception()
    capture_checkin(monitor_slug="nightly-job", status=MonitorStatus.OK, duration=2)
    sentry_sdk.capture_message("hello from probe, contact admin@example.org")
    sentry_sdk.flush(10)


def ratelimit():
    for i in (1, 2, 3):
        try:
            raise RuntimeError("rate limit probe %d" % i)
        except Exception:
            sentry_sdk.capture_exception()
        sentry_sdk.flush(10)
    sentry_sdk.logger.info("after the rate limit")
    capture_checkin(monitor_slug="nightly-job", status=MonitorStatus.OK, duration=1)
    sentry_sdk.flush(10)


full() if mode == "full" else ratelimit()
print("done")

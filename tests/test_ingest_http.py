"""The intake's HTTP contract on real loopback HTTP: auth, limits, gzip, JSON errors,
partial batches, CORS, health/readiness, backlog, metrics."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdp_tiktok.backends import open_outbox
from cdp_tiktok.events import BatchKey, OutgoingEvent
from cdp_tiktok.ingest.config import IntakeLimits
from cdp_tiktok.ingest.pipeline import LONE_SURROGATE
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from tests.helpers_service import PAGE_URL, WRITE_KEY, running_intake, service_settings
from tests.test_ingest_clients import wait_for_events

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
NOWHERE = "http://127.0.0.1:9"  # deliveries are off in these tests; never contacted


def purchase(order: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"user-{order}",
        "event": "Order Completed",
        "messageId": f"msg-{order}",
        "properties": {"order_id": order, "revenue": 9.5, "currency": "USD"},
        "context": {"page": {"url": PAGE_URL}},
        **extra,
    }


@pytest.fixture
def intake(tmp_path: Path) -> Any:
    settings = service_settings(tmp_path, NOWHERE)
    with running_intake(
        settings, worker=False, write_keys={"web": WRITE_KEY, "ios": "wk-ios"}
    ) as it:
        yield it


def post(url: str, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={**AUTH, **(headers or {})}, timeout=10, **kw)


def test_single_call_is_durable_before_success(intake: Any) -> None:
    answer = post(intake.url + "/v1/track", purchase("1"))
    assert answer.status_code == 200
    assert answer.json() == {"success": True}
    assert intake.outbox_count() == 1


def test_wrong_or_missing_write_key_is_401_without_hint(intake: Any) -> None:
    bad = {"Authorization": "Basic " + base64.b64encode(b"wk-test-0123456788:").decode()}
    for headers in (bad, {"Authorization": ""}):
        answer = httpx.post(
            intake.url + "/v1/track", content=json.dumps(purchase("1")), headers=headers
        )
        assert answer.status_code == 401
        assert WRITE_KEY not in answer.text and "wk-test" not in answer.text
        assert answer.json()["code"] == "unauthorized"
    # A malformed body without a valid key is also just 401: nothing is said about it.
    answer = httpx.post(intake.url + "/v1/track", content=b"{not json", headers=bad)
    assert answer.status_code == 401
    assert intake.outbox_count() == 0


def test_analytics_js_short_path_with_text_plain_body_key(intake: Any) -> None:
    body = {**purchase("2"), "writeKey": "wk-ios"}
    answer = httpx.post(
        intake.url + "/v1/t",
        content=json.dumps(body),
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text
    outbox = open_outbox(intake.settings.outbox)
    try:
        (record,) = outbox.claim("test", 10, 60)
    finally:
        outbox.close()
    assert "wk-ios" not in record.data_json
    batch = httpx.post(
        intake.url + "/v1/b",
        content=json.dumps({"batch": [purchase("3"), purchase("4")], "writeKey": "wk-ios"}),
        headers={"Content-Type": "text/plain"},
    )
    assert batch.status_code == 200


def test_oversized_message_and_batch_are_400_with_reason(intake: Any) -> None:
    big = purchase("big", properties={"note": "x" * 40_000, "currency": "USD"})
    answer = post(intake.url + "/v1/track", big)
    assert answer.status_code == 400
    assert answer.json()["code"] == "too_large"
    assert "32768 bytes" in answer.json()["message"]
    huge = {"batch": [purchase(str(i), properties={"n": "y" * 20_000}) for i in range(30)]}
    answer = post(intake.url + "/v1/batch", huge)
    assert answer.status_code == 400 and answer.json()["code"] == "too_large"
    # Inside a batch that fits, one message over 32 KB is refused by index.
    mixed = {"batch": [purchase("ok"), big]}
    answer = post(intake.url + "/v1/batch", mixed)
    assert answer.status_code == 400
    assert answer.json()["rejected"][0]["index"] == 1
    assert "larger than 32768" in answer.json()["rejected"][0]["errors"][0]["reason"]
    assert intake.outbox_count() == 1


def test_malformed_json_is_400_naming_where(intake: Any) -> None:
    answer = post(intake.url + "/v1/track", b'{"type": "track", "event": }')
    assert answer.status_code == 400
    assert answer.json()["code"] == "malformed_json"
    assert "line 1 column" in answer.json()["message"]
    assert intake.outbox_count() == 0


def test_gzip_body_is_accepted_and_a_gzip_bomb_is_not(intake: Any) -> None:
    body = gzip.compress(json.dumps({"batch": [purchase("g1"), purchase("g2")]}).encode())
    answer = post(intake.url + "/v1/batch", body, {"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert intake.outbox_count() == 2
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    answer = post(intake.url + "/v1/batch", bomb, {"Content-Encoding": "gzip"})
    assert answer.status_code == 400 and answer.json()["code"] == "too_large"
    truncated = post(intake.url + "/v1/batch", body[:-8], {"Content-Encoding": "gzip"})
    assert truncated.status_code == 400 and truncated.json()["code"] == "malformed_gzip"


def test_batch_with_invalid_messages_accepts_the_others_and_names_them(intake: Any) -> None:
    no_event = {"type": "track", "userId": "u"}
    not_object = 7
    batch = {"batch": [purchase("a"), no_event, purchase("b"), not_object, purchase("c")]}
    answer = post(intake.url + "/v1/batch", batch)
    assert answer.status_code == 400
    body = answer.json()
    assert body["accepted"] == 3
    assert [r["index"] for r in body["rejected"]] == [1, 3]
    assert body["rejected"][0]["errors"] == [
        {"field": "/event", "reason": "is required on a track message"}
    ]
    assert "2 of 5 messages refused" in body["message"]
    assert intake.outbox_count() == 3


def test_type_must_match_the_endpoint(intake: Any) -> None:
    answer = post(intake.url + "/v1/identify", purchase("t"))
    assert answer.status_code == 400
    assert answer.json()["rejected"][0]["errors"][0]["field"] == "/type"
    assert intake.outbox_count() == 0


def test_bad_envelope_and_too_many_messages(tmp_path: Path) -> None:
    settings = service_settings(tmp_path, NOWHERE)
    limits = IntakeLimits(max_batch_messages=3)
    with running_intake(settings, worker=False, limits=limits) as intake:
        answer = post(intake.url + "/v1/batch", {"batch": "nope"})
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_batch"
        answer = post(intake.url + "/v1/import", {"batch": [purchase(str(i)) for i in range(4)]})
        assert answer.status_code == 400 and answer.json()["code"] == "too_many_messages"
        assert intake.outbox_count() == 0


def test_cors_preflight_per_allowed_origin(tmp_path: Path) -> None:
    settings = service_settings(tmp_path, NOWHERE)
    limits = IntakeLimits(cors_origins=("https://shop.example",))
    with running_intake(settings, worker=False, limits=limits) as intake:
        headers = {
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        allowed = httpx.options(intake.url + "/v1/t", headers=headers)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = httpx.options(
            intake.url + "/v1/t", headers={**headers, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        # analytics.js's own request: text/plain, no pre-flight, the key in the body.
        body = json.dumps({**purchase("cors"), "writeKey": WRITE_KEY})
        posted = httpx.post(
            intake.url + "/v1/t",
            content=body,
            headers={"Origin": "https://shop.example", "Content-Type": "text/plain"},
        )
        assert posted.status_code == 200
        assert posted.headers["access-control-allow-origin"] == "https://shop.example"


def test_health_and_ready(intake: Any) -> None:
    assert httpx.get(intake.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(intake.url + "/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_backlog_answers_503_with_retry_after(tmp_path: Path) -> None:
    settings = service_settings(tmp_path, NOWHERE)
    outbox = open_outbox(settings.outbox)
    key = BatchKey("TikTok", "web", settings.event_source_id, None)
    outbox.enqueue([OutgoingEvent(key, {"event": "Purchase", "event_time": 1, "event_id": "e"})])
    outbox.close()
    with running_intake(settings, worker=False, limits=IntakeLimits(max_queue_records=0)) as intake:
        answer = post(intake.url + "/v1/track", purchase("late"))
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["code"] == "backlog"
        assert intake.outbox_count() == 1


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_parse_and_match_what_was_sent(tmp_path: Path) -> None:
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        settings = service_settings(tmp_path, sandbox.url)
        keys = {"web": WRITE_KEY, "ios": "wk-ios"}
        with running_intake(settings, write_keys=keys) as intake:
            batch = {"batch": [purchase(str(i)) for i in range(7)] + [{"type": "track"}]}
            assert post(intake.url + "/v1/batch", batch).status_code == 400
            ios = {"Authorization": "Basic " + base64.b64encode(b"wk-ios:").decode()}
            identify = {"userId": "user-x", "traits": {"email": "x@example.com"}}
            assert post(intake.url + "/v1/identify", identify, ios).status_code == 200
            assert httpx.post(intake.url + "/v1/track", content=b"{}").status_code == 401
            wait_for_events(sandbox, 7)
            text = httpx.get(intake.url + "/metrics").text
            samples = _samples(text)
            # delivery counters move after the sandbox answered: read until they show it
            for _ in range(200):
                if samples.get(("cdp_tiktok_delivery_delivered_total", ())) == 7:
                    break
                time.sleep(0.05)
                text = httpx.get(intake.url + "/metrics").text
                samples = _samples(text)
    assert WRITE_KEY not in text and "wk-ios" not in text and "user-x" not in text
    received = "cdp_tiktok_intake_messages_received_total"
    assert samples[(received, (("source", "web"), ("type", "track")))] == 7
    assert samples[(received, (("source", "ios"), ("type", "identify")))] == 1
    refused = "cdp_tiktok_intake_messages_refused_total"
    assert samples[(refused, (("reason", "invalid_message"),))] == 1
    assert samples[(refused, (("reason", "unauthorized"),))] == 1
    mapped = "cdp_tiktok_events_mapped_total"
    assert samples[(mapped, (("destination", "TikTok"), ("event", "Purchase")))] == 7
    assert samples[("cdp_tiktok_delivery_delivered_total", ())] == 7
    assert samples[("cdp_tiktok_delivery_dead_lettered_total", ())] == 0
    answers = "cdp_tiktok_delivery_answers_total"
    assert samples[(answers, (("code", "0"), ("outcome", "delivered")))] >= 1
    assert samples[("cdp_tiktok_delivery_batch_events_sum", ())] == 7
    assert samples[("cdp_tiktok_delivery_request_seconds_count", ())] >= 1
    assert samples[("cdp_tiktok_outbox_records", (("state", "pending"),))] == 0


def test_too_many_waiting_requests_answers_503_and_counts_it(tmp_path: Path) -> None:
    settings = service_settings(tmp_path, NOWHERE)
    # No room at all in the pipeline's queue: every request is refused before it waits.
    limits = IntakeLimits(max_waiting_requests=0)
    with running_intake(settings, worker=False, limits=limits) as intake:
        answer = post(intake.url + "/v1/batch", {"batch": [purchase("a"), purchase("b")]})
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        samples = _samples(httpx.get(intake.url + "/metrics").text)
        assert samples[("cdp_tiktok_intake_messages_refused_total", (("reason", "backlog"),))] == 2
        assert intake.outbox_count() == 0


def test_received_at_is_stamped_and_corrects_device_clock_skew(intake: Any) -> None:
    # The device clock is years behind, but the call was sent 10 minutes after it happened.
    late = purchase("skew", originalTimestamp="2020-01-01T00:00:00Z", sentAt="2020-01-01T00:10:00Z")
    del late["messageId"]
    assert post(intake.url + "/v1/track", late).status_code == 200
    outbox = open_outbox(intake.settings.outbox)
    try:
        (record,) = outbox.claim("test", 10, 60)
    finally:
        outbox.close()
    assert abs(record.data["event_time"] - (time.time() - 600)) < 120


def test_request_log_lines_carry_no_key_and_no_body(
    intake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdp_tiktok.ingest")
    secret_email = "very.private@example.com"
    body = purchase("log", context={"traits": {"email": secret_email}, "page": {"url": PAGE_URL}})
    assert post(intake.url + "/v1/track", body).status_code == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(b"guessed-key:").decode()}
    assert post(intake.url + "/v1/track", body, wrong).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "cdp_tiktok.ingest.access"]
    assert len(lines) == 2
    assert "status=200" in lines[0] and "messages=1" in lines[0] and "source=web" in lines[0]
    assert "status=401" in lines[1] and "source=-" in lines[1]
    text = caplog.text
    assert WRITE_KEY not in text and "guessed-key" not in text and secret_email not in text


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        ("/v1/track", b"", "malformed_json", "line 1 column 1"),
        ("/v1/track", b"[]", "invalid_message", "must be a JSON object, got array"),
        ("/v1/track", b"null", "invalid_message", "must be a JSON object, got null"),
        ("/v1/track", b'{"event": "x"', "malformed_json", "line 1 column"),
        ("/v1/track", b'{"event": "\xff"}', "malformed_json", "not UTF-8"),
        ("/v1/track", b"[" * 20_000 + b"]" * 20_000, "too_large", "larger than"),
        ("/v1/batch", b"[" * 100_000 + b"]" * 100_000, "malformed_json", "nested too deeply"),
        ("/v1/track", b'{"event": "x", "properties": {"v": NaN}}', "malformed_json", "NaN"),
        ("/v1/batch", b'{"batch": null}', "invalid_batch", "/batch"),
        ("/v1/batch", b'"batch"', "invalid_batch", "object"),
        ("/v1/batch", b'{"batch": [null]}', "invalid_messages", "must be a JSON object"),
        ("/v1/identify", b'{"traits": {}}', "invalid_message", "userId"),
    ],
)
def test_odd_bodies_are_refused_with_a_reason(
    intake: Any, path: str, body: bytes, code: str, words: str
) -> None:
    answer = post(intake.url + path, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code
    assert words in answer.text
    assert intake.outbox_count() == 0


def test_a_full_store_answers_503_and_recovers(intake: Any) -> None:
    # A real SQLite "database or disk is full" on the pipeline's own connection (as when
    # the disk fills up): the request is refused with Retry-After, nothing half-stored.
    connection = intake.service.pipeline._outbox._conn
    (pages,) = connection.execute("PRAGMA page_count").fetchone()
    connection.execute(f"PRAGMA max_page_count = {pages}")
    big = {"batch": [purchase(str(i), properties={"pad": "z" * 2000}) for i in range(50)]}
    answer = post(intake.url + "/v1/batch", big)
    assert answer.status_code == 503
    assert answer.json()["code"] == "store_unavailable"
    assert answer.headers["retry-after"] == "5"
    assert intake.outbox_count() == 0
    connection.execute("PRAGMA max_page_count = 1073741823")
    assert post(intake.url + "/v1/batch", big).status_code == 200
    assert intake.outbox_count() == 50


def test_message_size_counts_utf8_bytes_not_characters(intake: Any) -> None:
    fits = purchase("fits", properties={"note": "é" * 10_000, "currency": "USD"})  # ~20 KB
    over = purchase("over", properties={"note": "é" * 17_000, "currency": "USD"})  # ~34 KB
    answer = post(intake.url + "/v1/batch", {"batch": [fits, over]})
    assert answer.status_code == 400
    assert [r["index"] for r in answer.json()["rejected"]] == [1]
    assert intake.outbox_count() == 1


def test_a_lone_surrogate_is_400_naming_the_message_and_the_field(intake: Any) -> None:
    # JSON may escape half of a UTF-16 pair ("\ud800"); such a string has no UTF-8 form,
    # so it can be neither sized, hashed nor stored: that message is refused, alone.
    broken = purchase("broken", properties={"note": "x\ud800" + "y" * 9_000})  # > 8 KB
    padding = [purchase(f"pad-{i}", properties={"note": "z" * 5_000}) for i in range(6)]
    answer = post(intake.url + "/v1/batch", {"batch": [padding[0], broken, *padding[1:]]})
    assert answer.status_code == 400  # the body is over 32 KB: each message is sized
    body = answer.json()
    assert body["accepted"] == 6
    assert body["rejected"] == [
        {"index": 1, "errors": [{"field": "/properties/note", "reason": LONE_SURROGATE}]}
    ]
    assert intake.outbox_count() == 6
    small = purchase("small", context={"page": {"url": PAGE_URL}, "traits": {"\udc00": 1}})
    answer = post(intake.url + "/v1/track", small)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_message"
    assert answer.json()["rejected"][0]["errors"][0]["field"] == "/context/traits/\\udc00"
    assert intake.outbox_count() == 6


@pytest.mark.parametrize(
    "options", [{"http": "h11", "loop": "asyncio"}, {"http": "httptools", "loop": "auto"}]
)
def test_the_intake_serves_with_and_without_uvicorns_accelerators(
    tmp_path: Path, options: dict[str, str]
) -> None:
    # httptools and uvloop are dependencies, but uvicorn falls back to h11 and asyncio
    # without them (Windows has no uvloop): the intake answers alike on both.
    settings = service_settings(tmp_path, NOWHERE)
    with running_intake(settings, worker=False, server_options=options) as it:
        batch = {"batch": [purchase("a"), purchase("b")]}
        answer = post(it.url + "/v1/batch", gzip.compress(json.dumps(batch).encode()),
                      headers={"Content-Encoding": "gzip"})  # fmt: skip
        assert (answer.status_code, answer.json()) == (200, {"success": True})
        assert post(it.url + "/v1/track", b"{not json").status_code == 400
        assert it.outbox_count() == 2

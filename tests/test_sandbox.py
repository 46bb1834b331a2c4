"""The TikTok sandbox over real loopback HTTP: validation, token, faults, records, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdp_tiktok.events import Outcome
from cdp_tiktok.sandbox import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from cdp_tiktok.tiktok.codes import classify
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH

H = "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"
PIXEL = "CSANDBOX0000000000000"


def event(i: int, **changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "event": "Purchase",
        "event_time": 1735689600,
        "event_id": f"evt-{i}",
        "user": {"email": [H], "ip": "203.0.113.7"},
        "properties": {"contents": [{"content_id": "SKU-1", "price": 12.5, "quantity": 1}],
                       "currency": "EUR", "value": 12.5},
        "page": {"url": "https://shop.example/done"},
    }  # fmt: skip
    item.update(changes)
    return item


def body(events: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"event_source": "web", "event_source_id": PIXEL, "data": events, **top}


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(seed=1) as server:
        yield server


def post(
    server: SandboxServer, payload: Any, token: str | None = SANDBOX_ACCESS_TOKEN
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Access-Token"] = token
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(server.track_url, content=content, headers=headers, timeout=10)


def test_accepted_batch_is_recorded(sandbox: SandboxServer) -> None:
    answer = post(sandbox, body([event(0), event(1)], test_event_code="TEST1"))
    assert answer.status_code == 200
    reply = answer.json()
    assert reply["code"] == 0 and reply["message"] == "OK" and reply["request_id"]
    assert reply["data"] == {}
    records = sandbox.events()
    assert [r["data"]["event_id"] for r in records] == ["evt-0", "evt-1"]
    assert records[0]["test_event_code"] == "TEST1" and records[0]["event_source_id"] == PIXEL
    assert records[0]["request_id"] == reply["request_id"]
    stats = sandbox.stats()
    assert (stats.requests, stats.accepted_requests, stats.accepted_events) == (1, 1, 2)


def test_keep_alive_client_and_inspection_endpoints(sandbox: SandboxServer) -> None:
    headers = {"Access-Token": SANDBOX_ACCESS_TOKEN}
    with httpx.Client(base_url=sandbox.url, headers=headers) as client:
        for n in range(3):
            batch = [event(n * 10 + i) for i in range(5)]
            assert client.post(ENDPOINT_PATH, json=body(batch)).json()["code"] == 0
        everything = client.get("/sandbox/events").json()
        later = client.get("/sandbox/events", params={"since": 12}).json()
        stats = client.get("/sandbox/stats").json()
        assert client.get("/sandbox/events", params={"since": "x"}).status_code == 400
        assert client.get("/nowhere").status_code == 404
        assert client.get(ENDPOINT_PATH).status_code == 405
    assert [r["seq"] for r in everything] == list(range(15))
    assert [r["seq"] for r in later] == [12, 13, 14]
    assert stats["accepted_events"] == 15 and stats["requests"] == 3
    assert set(stats) >= {"requests", "accepted_events", "duplicates", "rejected_requests",
                          "throttled", "errors", "dropped"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"event_id": 7}, 40002, "Batch.1.event_id: Not a valid string."),
        ({"event_time": 1735689600000}, 40002, "Batch.1.event_time:"),
        ({"event_time": "2025-01-01"}, 40002, "Batch.1.event_time: Not a valid integer."),
        ({"properties": {"contents": [{"content_id": 12}]}}, 40002,
         "Batch.1.properties.contents.0.content_id: Not a valid string."),
        ({"properties": {"value": "12.50"}}, 40000,
         "Batch.1.properties.value: Invalid Price Field"),
        ({"properties": {"contents": [{"content_id": "A", "price": "9,99"}]}}, 40000,
         "Batch.1.properties.contents.0.price: Invalid Price Field"),
        ({"user": {"email": ["alice@example.com"]}}, 40002, "Batch.1.user.email.0:"),
        ({"user": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}}, 40002, "Batch.1.user.idfa:"),
        ({"page": {"referrer": "https://www.tiktok.com/"}}, 40002, "Batch.1.page.url:"),
        ({"event": "completepayment"}, 40002, "Batch.1.event:"),
        ({"event": "Browse"}, 40002, "Batch.1.event:"),
    ],
)  # fmt: skip
def test_one_invalid_event_fails_the_batch_naming_the_field(
    sandbox: SandboxServer, change: dict[str, Any], code: int, message: str
) -> None:
    bad = event(1, **change)
    if change.get("page", "") is None:
        del bad["page"]
    reply = post(sandbox, body([event(0), bad, event(2)])).json()
    assert reply["code"] == code
    assert reply["message"].startswith(message)
    assert sandbox.events() == []
    assert sandbox.stats().rejected_requests == 1


def test_web_events_without_a_page_are_accepted_unless_the_sandbox_requires_one() -> None:
    pageless = event(1)
    del pageless["page"]
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as lenient:
        assert post(lenient, body([event(0), pageless])).json()["code"] == 0
        assert lenient.stats().accepted_events == 2
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN, require_page_url=True) as strict:
        reply = post(strict, body([event(0), pageless])).json()
        assert reply["code"] == 40002
        assert reply["message"].startswith("Batch.1.page: Missing data for required field.")
        assert strict.stats().accepted_events == 0


def test_custom_events_follow_the_source_policy(sandbox: SandboxServer) -> None:
    assert post(sandbox, body([event(0, event="WishlistShared")])).json()["code"] == 0
    offline = {"event_source": "offline", "event_source_id": "7000000000000000001",
               "data": [{"event": "WishlistShared", "event_time": 1735689600,
                         "user": {"email": [H]}}]}  # fmt: skip
    reply = post(sandbox, offline).json()
    assert reply["code"] == 40002 and reply["message"].startswith("Batch.0.event:")


def test_envelope_errors(sandbox: SandboxServer) -> None:
    too_many = post(sandbox, body([event(i) for i in range(1001)])).json()
    assert too_many["code"] == 40000 and too_many["message"].startswith("data:")
    assert post(sandbox, b"{not json").json()["code"] == 40000
    assert post(sandbox, b'{"code": NaN}').json()["code"] == 40000
    in_data = post(sandbox, body([event(0, test_event_code="T")])).json()
    assert in_data["code"] == 40002 and in_data["message"].startswith("Batch.0.test_event_code")


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_access_token_is_checked(sandbox: SandboxServer, token: str | None) -> None:
    reply = post(sandbox, body([event(0)]), token=token).json()
    assert reply["code"] == 40105
    assert classify(200, json.dumps(reply).encode(), None, 1).outcome is Outcome.STOP
    assert sandbox.events() == []


def test_custom_access_token() -> None:
    with SandboxServer(access_token="s3cret") as server:
        assert post(server, body([event(0)]), token="s3cret").json()["code"] == 0
        assert post(server, body([event(0)])).json()["code"] == 40105


def test_permission_by_event_source_id() -> None:
    with SandboxServer(allowed_source_ids=["COTHER"]) as server:
        reply = post(server, body([event(0)])).json()
    assert reply["code"] == 40001


def test_duplicates_are_counted_by_source_event_and_id(sandbox: SandboxServer) -> None:
    post(sandbox, body([event(0), event(1)]))
    post(sandbox, body([event(1), event(2), event(1, event="AddToCart")]))
    post(sandbox, body([event(1)], event_source_id="COTHERPIXEL"))
    stats = sandbox.stats()
    assert stats.duplicates == 1 and stats.accepted_events == 6
    assert [r["duplicate"] for r in sandbox.events()] == [False, False, True, False, False, False]


def test_throttle_fault() -> None:
    with SandboxServer(throttle_rate=1.0, seed=3) as server:
        answer = post(server, body([event(0)]))
        assert answer.status_code == 200 and answer.json()["code"] == 40100
        assert classify(200, answer.content, None, 1).outcome is Outcome.THROTTLED
        assert server.stats().throttled == 1 and server.events() == []


def test_error_fault_is_an_html_503() -> None:
    with SandboxServer(error_rate=1.0, seed=3) as server:
        answer = post(server, body([event(0)]))
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("text/html")
        assert classify(503, answer.content, None, 1).outcome is Outcome.RETRY
        assert server.stats().errors == 1


def test_drop_fault_closes_the_connection() -> None:
    with SandboxServer(drop_rate=1.0, seed=3) as server:
        with pytest.raises(httpx.TransportError):
            post(server, body([event(0)]))
        assert server.stats().dropped == 1 and server.events() == []


def test_latency_fault_still_answers() -> None:
    with SandboxServer(latency_ms=20) as server:
        assert post(server, body([event(0)])).json()["code"] == 0
    with pytest.raises(ValueError):
        SandboxServer(latency_ms=-1)
    with pytest.raises(ValueError):
        SandboxServer(throttle_rate=1.5)


def _outcomes(seed: int) -> list[str]:
    results = []
    with SandboxServer(throttle_rate=0.3, error_rate=0.3, drop_rate=0.2, seed=seed) as server:
        for i in range(30):
            try:
                answer = post(server, body([event(i)]))
            except httpx.TransportError:
                results.append("dropped")
                continue
            results.append(str(answer.json()["code"]) if answer.status_code == 200 else "503")
        stats = server.stats()
    assert stats.requests == 30
    assert stats.accepted_requests + stats.throttled + stats.errors + stats.dropped == 30
    return results


def test_seeded_faults_are_reproducible() -> None:
    first = _outcomes(42)
    assert first == _outcomes(42)
    assert {"0", "40100", "503", "dropped"} <= set(first)


def test_poison_fails_any_batch_holding_the_event_id() -> None:
    with SandboxServer(poison=["evt-13"]) as server:
        reply = post(server, body([event(11), event(12), event(13)])).json()
        assert reply["code"] == 40002
        assert reply["message"].startswith("Batch.2.event_id")
        assert classify(200, json.dumps(reply).encode(), None, 3).outcome is Outcome.SPLIT
        assert post(server, body([event(11), event(12)])).json()["code"] == 0
        assert [r["data"]["event_id"] for r in server.events()] == ["evt-11", "evt-12"]


def test_record_file_is_json_lines(tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    with SandboxServer(record_path=record) as server:
        post(server, body([event(0), event(1)]))
        post(server, body([event(0, event_id=5)]))  # rejected: not recorded
        post(server, body([event(2)]))
    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert [line["data"]["event_id"] for line in lines] == ["evt-0", "evt-1", "evt-2"]
    assert [line["seq"] for line in lines] == [0, 1, 2]


def test_reset_forgets_events_and_counters(sandbox: SandboxServer) -> None:
    post(sandbox, body([event(0)]))
    assert httpx.post(sandbox.url + "/sandbox/reset").json() == {"reset": True}
    assert sandbox.events() == [] and sandbox.stats().requests == 0
    post(sandbox, body([event(0)]))
    assert sandbox.stats().duplicates == 0 and sandbox.events()[0]["seq"] == 0


def test_memory_limit_keeps_the_newest_events() -> None:
    with SandboxServer(memory_limit=2) as server:
        post(server, body([event(i) for i in range(5)]))
        assert [r["seq"] for r in server.events()] == [3, 4]
        assert [r["seq"] for r in server.events(since=4)] == [4]
        assert server.stats().accepted_events == 5


def test_url_needs_a_started_server() -> None:
    server = SandboxServer()
    with pytest.raises(RuntimeError):
        _ = server.url


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "cdp_tiktok.sandbox"],
        [sys.executable, "-c", "from cdp_tiktok.cli import main; main()", "sandbox"],
    ],
)
def test_process_starts_prints_its_url_and_answers(command: list[str], tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    env = dict(os.environ, CDP_TIKTOK_SANDBOX_ACCESS_TOKEN="proc-s3cret-token")
    process = subprocess.Popen(
        [*command, "--port", "0", "--record", str(record), "--seed", "1", "--poison", "p-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        headers = {"Access-Token": "proc-s3cret-token"}
        ok = httpx.post(url + ENDPOINT_PATH, json=body([event(0)]), headers=headers, timeout=10)
        assert ok.json()["code"] == 0
        poisoned = httpx.post(
            url + ENDPOINT_PATH, json=body([event(0, event_id="p-1")]), headers=headers, timeout=10
        )
        assert poisoned.json()["code"] == 40002
        assert httpx.get(url + "/sandbox/stats", timeout=10).json()["accepted_events"] == 1
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "proc-s3cret-token" not in out + err
    assert "sandbox stopped" in err
    assert len(record.read_text(encoding="utf-8").splitlines()) == 1


def test_memory_limit_spans_requests_and_zero_keeps_nothing() -> None:
    with SandboxServer(memory_limit=3) as server:
        for n in range(3):
            post(server, body([event(2 * n), event(2 * n + 1)]))
        post(server, body([event(5)]))  # a duplicate, still recorded and flagged
        records = server.events()
        assert [r["seq"] for r in records] == [4, 5, 6]
        assert [r["duplicate"] for r in records] == [False, False, True]
        assert [r["data"]["event_id"] for r in server.events(since=5)] == ["evt-5", "evt-5"]
    with SandboxServer(memory_limit=0) as server:
        post(server, body([event(0), event(0)]))
        assert server.events() == []
        assert server.stats().accepted_events == 2 and server.stats().duplicates == 1


def test_memory_limit_option_of_the_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp_tiktok.sandbox", "--port", "0", "--memory-limit", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        headers = {"Access-Token": SANDBOX_ACCESS_TOKEN}
        reply = httpx.post(
            url + ENDPOINT_PATH, json=body([event(0), event(1)]), headers=headers, timeout=10
        )
        assert reply.json()["code"] == 0
        kept = httpx.get(url + "/sandbox/events?since=0", timeout=10).json()
        assert [r["data"]["event_id"] for r in kept] == ["evt-1"]
        assert httpx.get(url + "/sandbox/stats", timeout=10).json()["accepted_events"] == 2
    finally:
        process.terminate()
        process.communicate(timeout=10)

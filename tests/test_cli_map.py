"""``cdp-tiktok map``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.jsonout import dumps_line
from cdp_tiktok.matchkeys import sha256_hex
from cdp_tiktok.tiktok.payload import validate_request

PAGE = {"page": {"url": "https://shop.example/done"}}
T = "2025-01-01T00:00:00Z"
IDENTIFY = {
    "type": "identify",
    "userId": "user-7",
    "anonymousId": "anon-7",
    "traits": {"email": "Jane@Example.com", "phone": "+1 213 373 4253"},
    "timestamp": T,
}
ORDER = {
    "type": "track",
    "event": "Order Completed",
    "anonymousId": "anon-7",
    "messageId": "m-order",
    "timestamp": T,
    "properties": {"order_id": 42, "revenue": 10, "products": [{"sku": "S", "quantity": 1}]},
    "context": PAGE,
}


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["map", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def jsonl(*messages: Any) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def test_identify_then_track_in_one_stream_carries_the_hashed_keys(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(IDENTIFY, ORDER), encoding="utf-8")
    code, out, err = run(str(path))
    assert code == 0, err
    (line,) = out.splitlines()
    data = json.loads(line)
    assert data["event"] == "Purchase" and data["event_id"] == "m-order"
    assert data["user"]["email"] == [sha256_hex("jane@example.com")]
    assert data["user"]["phone"] == [sha256_hex("+12133734253")]
    assert data["user"]["external_id"] == [sha256_hex("user-7")]
    assert f"{path}:1: no event: identify calls feed the identity store" in err
    assert "Jane@Example.com" not in out + err and "+1 213 373 4253" not in out + err
    assert "2 message(s): 1 event(s), 1 without event, 0 invalid" in err


def test_stdout_is_exactly_the_data_items_one_compact_line_each() -> None:
    code, out, _ = run("-", stdin=jsonl(ORDER, {**ORDER, "messageId": "m2"}))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line == json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False)


def test_a_json_array_and_a_single_object_are_read_too() -> None:
    assert len(run(stdin=json.dumps([ORDER, ORDER]))[1].splitlines()) == 2
    assert len(run(stdin=json.dumps(ORDER))[1].splitlines()) == 1


def test_invalid_messages_are_reported_with_lines_and_exit_1() -> None:
    stdin = jsonl(ORDER, {"type": "track", "userId": "u"}) + "{not json\n" + jsonl(ORDER)
    code, out, err = run("--quiet", stdin=stdin)
    assert code == 1
    assert len(out.splitlines()) == 2
    assert "<stdin>:2: /event" in err and "<stdin>:3:" in err
    assert "4 message(s): 2 event(s), 0 without event, 2 invalid" in err


def test_messages_without_events_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_TIKTOK_REQUIRE_PAGE_URL", "true")
    stdin = jsonl(
        {**ORDER, "event": "Order Refunded"},
        {**ORDER, "context": {}},
        {**ORDER, "integrations": {"All": False}},
    )
    code, out, err = run(stdin=stdin)
    assert code == 0 and out == ""
    assert "<stdin>:1: no event: no rule matches track 'Order Refunded'" in err
    assert "<stdin>:2: no event: rule order-completed: web events need page.url" in err
    assert "<stdin>:3: no event: no destination enabled" in err


def test_explain_goes_to_stderr_and_keeps_stdout_pure() -> None:
    code, out, err = run("--explain", stdin=jsonl(ORDER))
    assert code == 0
    json.loads(out)
    assert "<stdin>:1: explain: rule 'order-completed'" in err and "fired -> Purchase" in err
    assert "explain: rule 'product-added'" in err and "not a candidate" in err


def test_envelope_prints_request_bodies_that_validate() -> None:
    messages = [{**ORDER, "messageId": f"m{i}"} for i in range(3)]
    code, out, _ = run(
        "--envelope", "--pixel-code", "CPIXEL", "--test-event-code", "TEST1", stdin=jsonl(*messages)
    )
    assert code == 0
    (line,) = out.splitlines()
    body = json.loads(line)
    assert body["event_source_id"] == "CPIXEL" and body["test_event_code"] == "TEST1"
    assert [d["event_id"] for d in body["data"]] == ["m0", "m1", "m2"]
    assert validate_request(body) == []


def test_envelope_bodies_hold_at_most_batch_max_events() -> None:
    messages = [{**ORDER, "messageId": f"m{i}"} for i in range(5)]
    result = CliRunner().invoke(
        main,
        ["map", "--envelope"],
        input=jsonl(*messages),
        env={"CDP_TIKTOK_BATCH_MAX_EVENTS": "2"},
    )
    assert result.exit_code == 0, result.stderr
    bodies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [[d["event_id"] for d in body["data"]] for body in bodies] == [
        ["m0", "m1"],
        ["m2", "m3"],
        ["m4"],
    ]


def test_output_is_what_json_writes_for_big_ints_tiny_floats_and_non_ascii() -> None:
    # Lines orjson writes and lines only json can write (ints beyond 64 bits, floats
    # under 1e-4) come out as json.dumps writes them; NaN is dropped with a warning.
    order = {"type": "track", "event": "Order Completed", "timestamp": T}
    messages = [
        {
            **order,
            "userId": "u-1",
            "properties": {
                "order_id": 2**100,
                "revenue": 1e-05,
                "currency": "EUR",
                "products": [{"product_id": "p-é", "name": "Café 😀", "quantity": 2**64}],
            },
        },
        {**order, "userId": "u-2", "properties": {"order_id": "o2", "revenue": math.nan}},
        {**order, "userId": "u-3", "properties": {"order_id": "o3", "value": 2.5e20}},
        {
            **order,
            "userId": "ü-4",
            "properties": {"order_id": "o4", "value": 10.5, "x": "日本\u2028"},
        },
    ]
    code, out, err = run(stdin=jsonl(*messages))
    assert code == 0, err
    lines = out.splitlines(keepends=True)
    assert len(lines) == 4
    assert all(line == dumps_line(json.loads(line)) for line in lines)
    assert '"value":1e-05' in lines[0] and f'"num_items":{2**64}' in lines[0]
    assert "Café 😀" in lines[0] and '"value":2.5e+20' in lines[2] and '"value":10.5' in lines[3]
    assert "properties.value: a non-finite number; field dropped" in err


def test_app_source_and_a_custom_mapping_directory(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        "version: 1\ndefaults:\n  event_time: timestamp\n  app: {app_id: \"'123'\"}\n"
        "rules:\n  - name: opened\n    when: type == 'track' and event == 'Application Opened'\n"
        "    event: LaunchAPP\n",
        encoding="utf-8",
    )
    message = {"type": "track", "event": "Application Opened", "userId": "u", "timestamp": T}
    code, out, err = run("--event-source", "app", "--mappings", str(tmp_path), stdin=jsonl(message))
    assert code == 0, err
    assert json.loads(out) == {
        "event": "LaunchAPP",
        "event_time": 1735689600,
        "app": {"app_id": "123"},
    }


def test_a_broken_mapping_directory_exits_2_with_located_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\nrules:\n  - name: x\n", encoding="utf-8")
    code, out, err = run("--mappings", str(tmp_path), stdin=jsonl(ORDER))
    assert code == 2 and out == ""
    assert "bad.yaml:3: error:" in err


def test_a_mapping_directory_without_files_exits_2_naming_it(tmp_path: Path) -> None:
    code, out, err = run("--mappings", str(tmp_path), stdin=jsonl(ORDER))
    assert code == 2 and out == ""
    assert f"{tmp_path}:0: error: no mapping files" in err
    assert "Traceback" not in err


def test_sqlite_identity_store_persists_between_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'identity.db'}"
    assert run("--identity", url, stdin=jsonl(IDENTIFY))[0] == 0
    code, out, _ = run("--identity", url, stdin=jsonl(ORDER))
    assert code == 0
    assert json.loads(out)["user"]["email"] == [sha256_hex("jane@example.com")]

"""Response classification: every row of the table, and what can never count as delivered."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.events import Outcome
from cdp_tiktok.tiktok.codes import CODE_RULES, MESSAGE_LIMIT, UNKNOWN_CODE_REASON, classify


def tiktok(code: object, message: str = "msg", request_id: str = "RID-1") -> bytes:
    return json.dumps(
        {"code": code, "message": message, "request_id": request_id, "data": {}}
    ).encode()


@pytest.mark.parametrize(
    ("code", "outcome", "reason"),
    [
        (0, Outcome.DELIVERED, "ok"),
        (20001, Outcome.DELIVERED, "partial"),
        (40000, Outcome.SPLIT, "invalid_parameter"),
        (40001, Outcome.STOP, "permission"),
        (40002, Outcome.SPLIT, "validation"),
        (40100, Outcome.THROTTLED, "throttled"),
        (40105, Outcome.STOP, "auth"),
        (40003, Outcome.RETRY, UNKNOWN_CODE_REASON),
        (41000, Outcome.RETRY, UNKNOWN_CODE_REASON),
        (49999, Outcome.RETRY, UNKNOWN_CODE_REASON),
        (50000, Outcome.RETRY, "server_error"),
        (51001, Outcome.RETRY, "server_error"),
        (1, Outcome.RETRY, UNKNOWN_CODE_REASON),
        (-1, Outcome.RETRY, UNKNOWN_CODE_REASON),
        (30000, Outcome.RETRY, UNKNOWN_CODE_REASON),
    ],
)
def test_body_codes_of_http_200(code: int, outcome: Outcome, reason: str) -> None:
    verdict = classify(200, tiktok(code, "Batch.0.event_id: Not a valid string"), None, 10)
    assert verdict.outcome is outcome
    assert verdict.reason == reason
    assert verdict.code == code and verdict.http_status == 200
    assert verdict.message == "Batch.0.event_id: Not a valid string"
    assert verdict.request_id == "RID-1"


def test_the_table_covers_the_documented_codes() -> None:
    assert set(CODE_RULES) == {0, 20001, 40000, 40001, 40002, 40100, 40105}


@pytest.mark.parametrize("code", [40000, 40002])
def test_split_of_a_single_event_is_dead(code: int) -> None:
    verdict = classify(200, tiktok(code), None, 1)
    assert verdict.outcome is Outcome.DEAD
    assert verdict.reason == CODE_RULES[code].reason


def test_no_http_answer_is_retried_with_the_error_text() -> None:
    verdict = classify(None, b"", "ReadTimeout: timed out", 5)
    assert verdict.outcome is Outcome.RETRY and verdict.reason == "transport"
    assert verdict.http_status is None and verdict.code is None
    assert "timed out" in verdict.message


def test_http_429_is_throttled_and_keeps_retry_after() -> None:
    verdict = classify(429, b"slow down", None, 5, retry_after=7.0)
    assert verdict.outcome is Outcome.THROTTLED and verdict.retry_after == 7.0
    assert verdict.http_status == 429


def test_code_40100_keeps_retry_after() -> None:
    verdict = classify(200, tiktok(40100), None, 5, retry_after=2.5)
    assert verdict.outcome is Outcome.THROTTLED and verdict.retry_after == 2.5


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_http_5xx_is_retried_with_a_short_message(status: int) -> None:
    html = b"<html>\n<body>\n<h1>502   Bad Gateway</h1>" + b"x" * 5000 + b"</body></html>"
    verdict = classify(status, html, None, 5)
    assert verdict.outcome is Outcome.RETRY and verdict.reason == "http_5xx"
    assert verdict.message.startswith(f"HTTP {status}: <html> <body> <h1>502 Bad Gateway")
    assert len(verdict.message) <= MESSAGE_LIMIT + 20


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 422])
def test_other_http_4xx_is_dead(status: int) -> None:
    verdict = classify(status, tiktok(0), None, 5)
    assert verdict.outcome is Outcome.DEAD and verdict.reason == "http_4xx"


def test_http_413_splits_and_408_retries() -> None:
    assert classify(413, b"", None, 10).outcome is Outcome.SPLIT
    assert classify(413, b"", None, 1).outcome is Outcome.DEAD
    assert classify(408, b"", None, 10).outcome is Outcome.RETRY


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>ok</html>", b"[]", b'"code"', b"{}", b'{"code": "0"}', b'{"code": null}',
     b'{"code": 0.0}', b'{"code": true}', b'{"message": "OK"}', b"\xff\xfe"],
)  # fmt: skip
def test_http_200_without_integer_code_is_a_gateway_fault(body: bytes) -> None:
    verdict = classify(200, body, None, 3)
    assert verdict.outcome is Outcome.RETRY and verdict.reason == "gateway"


def test_unexpected_status_is_retried_not_delivered() -> None:
    for status in (100, 301, 302, 304):
        verdict = classify(status, tiktok(0), None, 3)
        assert verdict.outcome is Outcome.RETRY


@given(code=st.integers().filter(lambda c: c not in (0, 20001)), size=st.integers(1, 1000))
def test_a_non_zero_code_is_never_delivered(code: int, size: int) -> None:
    assert classify(200, tiktok(code), None, size).outcome is not Outcome.DELIVERED


@given(body=st.binary(max_size=200), status=st.one_of(st.none(), st.integers(100, 599)))
def test_garbage_bodies_are_never_delivered(body: bytes, status: int | None) -> None:
    verdict = classify(status, body, None, 10)
    if verdict.outcome is Outcome.DELIVERED:  # only a real JSON success can get here
        parsed = json.loads(body)
        assert parsed["code"] in (0, 20001) and 200 <= (status or 0) <= 299


@given(
    status=st.integers(100, 599).filter(lambda s: not 200 <= s <= 299),
    code=st.sampled_from([0, 20001]),
)
def test_a_success_code_behind_a_non_2xx_status_is_not_delivered(status: int, code: int) -> None:
    assert classify(status, tiktok(code), None, 10).outcome is not Outcome.DELIVERED


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(value=_JSON)
def test_arbitrary_json_is_delivered_only_with_code_0_or_20001(value: object) -> None:
    verdict = classify(200, json.dumps(value).encode(), None, 10)
    if verdict.outcome is Outcome.DELIVERED:
        assert isinstance(value, dict) and value.get("code") in (0, 20001)
        assert type(value["code"]) is int

"""TikTok's wire format: envelope, encoding, and validation with TikTok-style paths."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.events import BatchKey
from cdp_tiktok.tiktok.payload import (
    ENDPOINT_PATH,
    PayloadProblem,
    build_request,
    encode_batch,
    encode_event,
    encode_request,
    envelope_overhead,
    request_schema,
    validate_event,
    validate_request,
)

H = "848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f"
WEB = BatchKey("TikTok", "web", "CXXXXXXXXXXXXXXXXXXX")


def web_event(i: int = 0) -> dict[str, Any]:
    """The reference's §2.6 example event."""
    return {
        "event": "Purchase",
        "event_time": 1735689600,
        "event_id": f"7d1c2b9e-{i}",
        "user": {
            "email": [H], "phone": [H], "external_id": [H], "ttclid": "E.C.P.abc123",
            "ttp": "2abcdefghijklmnopqrstuvwxyz", "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "en-US",
        },
        "properties": {
            "contents": [
                {"content_id": "SKU-1", "content_name": "Mug", "price": 12.5, "quantity": 2}
            ],
            "content_type": "product", "content_ids": ["SKU-1"], "currency": "EUR",
            "value": 25.0, "num_items": 2, "order_id": "A-1001",
        },
        "page": {"url": "https://shop.example/checkout/done?ttclid=E.C.P.abc123",
                 "referrer": "https://shop.example/cart"},
        "limited_data_use": False,
    }  # fmt: skip


def request(events: list[dict[str, Any]], source: str = "web") -> dict[str, Any]:
    return {"event_source": source, "event_source_id": "ID-1", "data": events}


def only(problems: list[PayloadProblem]) -> PayloadProblem:
    assert len(problems) == 1, problems
    return problems[0]


# ------------------------------------------------------------------------ envelope


def test_endpoint_path() -> None:
    assert ENDPOINT_PATH == "/open_api/v1.3/event/track/"


def test_build_request_puts_shared_fields_at_the_top_level() -> None:
    key = BatchKey("TikTok", "web", "CPIXEL", test_event_code="TEST123")
    body = build_request(key, [web_event(0), web_event(1)], "cdp_tiktok")
    assert list(body) == [
        "event_source",
        "event_source_id",
        "partner_name",
        "test_event_code",
        "data",
    ]
    assert body["test_event_code"] == "TEST123"
    assert all("test_event_code" not in item for item in body["data"])
    assert validate_request(body) == []


def test_build_request_omits_unset_optional_fields() -> None:
    body = build_request(WEB, [web_event()], None)
    assert list(body) == ["event_source", "event_source_id", "data"]


@pytest.mark.parametrize("count", [0, 1001])
def test_build_request_refuses_empty_or_oversized_batches(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 1000"):
        build_request(WEB, [web_event()] * count, None)


def test_encoding_is_compact_utf8() -> None:
    event = web_event()
    event["properties"]["description"] = "café ☕"
    raw = encode_request(build_request(WEB, [event], "p"))
    assert b" " not in raw.replace(b"Mozilla/5.0 (X11; Linux x86_64)", b"").replace(
        "café ☕".encode(), b""
    )
    assert "café ☕".encode() in raw
    assert json.loads(raw)["data"][0] == event


def test_encoding_refuses_nan() -> None:
    event = web_event()
    event["properties"]["value"] = float("nan")
    with pytest.raises(ValueError):
        encode_request(build_request(WEB, [event], None))


@pytest.mark.parametrize("partner", [None, "cdp_tiktok"])
@pytest.mark.parametrize("count", [1, 3])
def test_encode_batch_matches_encode_request(partner: str | None, count: int) -> None:
    key = BatchKey("TikTok", "crm", "7000000000000000001", "T1")
    events = [web_event(i) for i in range(count)]
    encoded = [encode_event(e) for e in events]
    raw = encode_batch(key, encoded, partner)
    assert raw == encode_request(build_request(key, events, partner))
    assert len(raw) == envelope_overhead(key, partner) + sum(map(len, encoded)) + count - 1


# ---------------------------------------------------------------------- validation


def test_schema_is_valid_json_schema_2020_12() -> None:
    schema = request_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_reference_example_is_valid() -> None:
    assert validate_request(request([web_event(i) for i in range(3)]), names=True) == []


def mutate(path: str, value: Any, *, delete: bool = False) -> dict[str, Any]:
    events = [web_event(i) for i in range(5)]
    target: Any = events
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = int(parts[-1]) if isinstance(target, list) else parts[-1]
    if delete:
        del target[last]
    else:
        target[last] = value
    return request(events)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("3.properties.contents.0.content_id", 5, "Not a valid string."),
        ("2.event_id", 123, "Not a valid string."),
        ("1.event_time", 1735689600000, "Must be less than or equal to 9999999999."),
        ("1.event_time", "2025-01-01T00:00:00Z", "Not a valid integer."),
        ("1.event_time", 1735689600.5, "Not a valid integer."),
        ("1.event_time", None, "Not a valid integer."),
        ("4.properties.contents.0.price", "12.50", "Not a valid number."),
        ("0.properties.value", "€25", "Not a valid number."),
        ("0.properties.num_items", 2.5, "Not a valid integer."),
        ("0.properties.currency", "eur", "Must be an uppercase ISO 4217 currency code."),
        ("0.properties.content_type", "products", "Must be one of: product, product_group."),
        ("0.properties.contents_ids", ["SKU-1"], "Misspelled key"),
        ("0.user.email.0", "alice@example.com", "Must be a lowercase SHA-256 hex digest"),
        ("0.user.email", H, "Not a valid list."),
        ("0.user.email", [], "Must not be empty."),
        ("0.user.phone.0", H.upper(), "Must be a lowercase SHA-256"),
        ("0.user.first_name", "Alice", "Must be a lowercase SHA-256"),
        ("0.user.city", "", "Must not be empty."),
        ("0.user.phone_number", "+1213", "Unknown field."),
        ("0.user.idfa", "ABCD", "Must be an uppercase IDFA"),
        ("0.test_event_code", "TEST1", "test_event_code belongs at the top level"),
        ("0.limited_data_use", "false", "Not a valid boolean."),
        ("0.page.url", 7, "Not a valid string."),
    ],
)  # fmt: skip
def test_each_problem_names_the_field_tiktok_style(path: str, value: Any, message: str) -> None:
    where = f"Batch.{path}"
    problems = validate_request(mutate(path, value))
    first = problems[0]
    assert first.path == where
    assert first.message.startswith(message)
    assert first.index == int(path.split(".")[0])
    assert str(first) == f"{where}: {first.message}"


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("2.event", "Batch.2.event"),
        ("2.event_time", "Batch.2.event_time"),
        ("0.page.url", "Batch.0.page.url"),
    ],
)
def test_missing_required_fields(path: str, where: str) -> None:
    problem = only(validate_request(mutate(path, None, delete=True)))
    assert (problem.path, problem.message) == (where, "Missing data for required field.")


def test_page_is_optional_on_web_unless_required() -> None:
    pageless = mutate("0.page", None, delete=True)
    assert validate_request(pageless) == []
    problem = only(validate_request(pageless, require_page_url=True))
    assert (problem.path, problem.message) == ("Batch.0.page", "Missing data for required field.")
    item = pageless["data"][0]
    assert validate_event(item, "web") == []
    assert only(validate_event(item, "web", require_page_url=True)).path == "page"
    assert validate_event(item, "crm", require_page_url=True) == validate_event(item, "crm")


def test_problem_messages_never_echo_the_value() -> None:
    problems = validate_request(mutate("0.user.email.0", "alice.secret@example.com"))
    assert all("alice" not in str(p) for p in problems)


def test_envelope_problems_have_no_index() -> None:
    body = request([web_event()])
    body["event_source"] = "email"
    body["pixel_code"] = "C1"
    del body["event_source_id"]
    paths = {(p.path, p.index) for p in validate_request(body)}
    assert {("event_source", None), ("event_source_id", None), ("pixel_code", None)} <= paths
    assert only(validate_request([])).path == "request"


def test_more_than_1000_events_fail_the_request() -> None:
    problem = only(validate_request(request([web_event()] * 1001)))
    assert problem.path == "data" and problem.index is None
    assert problem.message == "Length must be between 1 and 1000."


def test_problems_are_ordered_by_row() -> None:
    body = request([web_event(i) for i in range(4)])
    body["data"][3]["event_id"] = 3
    body["data"][1]["event_id"] = 1
    assert [p.index for p in validate_request(body)] == [1, 3]


def app_event() -> dict[str, Any]:
    return {"event": "LaunchAPP", "event_time": 1735689600, "event_id": "a-1",
            "app": {"app_id": "com.example.app"},
            "user": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "att_status": "AUTHORIZED",
                     "gaid": "38400000-8cf0-11bd-b23e-10b96e40000d"}}  # fmt: skip


def test_per_source_rules() -> None:
    assert validate_event(app_event(), "app") == []
    missing_app = app_event()
    del missing_app["app"]
    assert only(validate_event(missing_app, "app")).path == "app"
    with_ttclid = app_event()
    with_ttclid["user"]["ttclid"] = "E.C.P.x"
    problem = only(validate_event(with_ttclid, "app"))
    assert (problem.path, problem.message) == (
        "user.ttclid",
        "Not allowed when event_source is app.",
    )
    on_web = web_event()
    on_web["user"]["idfa"] = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
    assert only(validate_event(on_web, "web")).message == "Not allowed when event_source is web."


def test_offline_allows_only_email_and_phone() -> None:
    user: dict[str, Any] = {"email": [H], "phone": [H]}
    event = {"event": "Purchase", "event_time": 1735689600, "user": user}
    assert validate_event(event, "offline") == []
    user["external_id"] = [H]
    user["ip"] = "203.0.113.7"
    assert {p.path for p in validate_event(event, "offline")} == {"user.external_id", "user.ip"}


def test_crm_requires_a_lead_id() -> None:
    event: dict[str, Any] = {"event": "Lead", "event_time": 1735689600, "user": {"email": [H]}}
    assert only(validate_event(event, "crm")).path == "lead"
    event["lead"] = {"lead_event_source": "HubSpot"}
    assert only(validate_event(event, "crm")).path == "lead.lead_id"
    event["lead"]["lead_id"] = "7000000001"
    assert validate_event(event, "crm") == []


def test_validate_event_with_an_index_uses_batch_paths() -> None:
    event = web_event()
    event["event_id"] = 9
    problem = only(validate_event(event, "web", index=7))
    assert (problem.path, problem.index) == ("Batch.7.event_id", 7)
    with pytest.raises(ValueError):
        validate_event(event, "email")


def test_custom_properties_pass_through() -> None:
    event = web_event()
    event["properties"]["vertical"] = {"travel": {"nights": 3}}
    event["properties"]["contents"][0]["color"] = "red"
    assert validate_event(event, "web") == []


def test_names_are_checked_against_the_catalog_on_request() -> None:
    body = request([web_event(), web_event()])
    body["data"][1]["event"] = "purchase"
    assert validate_request(body) == []
    problem = only(validate_request(body, names=True))
    assert problem.path == "Batch.1.event" and "Purchase" in problem.message
    body["data"][1]["event"] = "MyCustomEvent"
    assert validate_request(body, names=True) == []


def test_trailing_newline_does_not_pass_as_a_hash() -> None:
    problems = validate_request(mutate("0.user.email.0", H + "\n"))
    assert only(problems).path == "Batch.0.user.email.0"


# ------------------------------------------- the compiled validator agrees with jsonschema

_GARBAGE = st.sampled_from(
    [None, True, False, 0, 7, -3, 2.5, "", "x", "EUR", "eur", H, H.upper(), [], [H], ["x"],
     [7], {}, {"a": 1}, 1735689600, 1735689600000, "product", "web"]
)  # fmt: skip
_KEYS = {
    "": ["event", "event_time", "event_id", "user", "properties", "page", "app", "ad", "lead",
         "limited_data_use", "test_event_code", "extra"],
    "user": ["email", "phone", "external_id", "ttclid", "ttp", "ip", "idfa", "gaid",
             "att_status", "first_name", "city", "phone_number"],
    "properties": ["contents", "content_type", "content_ids", "currency", "value",
                   "num_items", "order_id", "contents_ids", "custom"],
    "page": ["url", "referrer", "title"],
    "app": ["app_id", "app_name"],
    "lead": ["lead_id", "lead_event_source"],
}  # fmt: skip


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(
        draw(st.sampled_from([web_event(), app_event()])) | {"lead": {"lead_id": "L1"}}
    )
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(sorted(_KEYS)))
        key = draw(st.sampled_from(_KEYS[section]))
        holder = event if section == "" else event.get(section)
        if not isinstance(holder, dict):
            continue
        if draw(st.booleans()) and key in holder:
            del holder[key]
        else:
            holder[key] = copy.deepcopy(draw(_GARBAGE))
    return event


_ORACLE = jsonschema.Draft202012Validator(request_schema())


@given(
    source=st.sampled_from(["web", "app", "offline", "crm", "email"]),
    events=st.lists(mutated_events(), min_size=0, max_size=3),
)
def test_compiled_validator_agrees_with_jsonschema(source: str, events: list[Any]) -> None:
    body = request(events, source)
    ours = validate_request(body)
    assert (ours == []) == _ORACLE.is_valid(body), ours
    if source != "email":
        for event in events:
            alone = request([event], source)
            assert (validate_event(event, source) == []) == _ORACLE.is_valid(alone)

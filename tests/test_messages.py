"""Segment message validation, normalization and timestamps (cdp_tiktok.messages)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cdp_tiktok.messages import (
    _CLEAN,
    _ID_FIELDS,
    _NULLABLE,
    MESSAGE_TYPES,
    FieldError,
    MessageError,
    _batch_validator,
    _envelope_valid,
    _message_validator,
    _scan,
    _text_datetime,
    _to_datetime,
    event_time,
    expand_batch,
    is_batch,
    parse_timestamp,
    validate_message,
)
from cdp_tiktok.testing.strategies import (
    ecommerce_track_messages,
    invalid_messages,
    valid_messages,
)

ISO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u-1", **fields}


def rejected(message: Any, **kwargs: Any) -> MessageError:
    with pytest.raises(MessageError) as info:
        validate_message(message, **kwargs)
    return info.value


def pointers(error: MessageError) -> set[str]:
    return {e.pointer for e in error.errors}


# --------------------------------------------------------------------------- errors


def test_missing_user_and_anonymous_id_is_one_clear_error() -> None:
    error = rejected({"type": "track", "event": "E"})
    assert error.errors == [
        FieldError(
            "/userId", "userId or anonymousId is required (a non-empty string); neither is present"
        )
    ]
    assert "anonymousId" in str(error)


def test_empty_ids_do_not_identify() -> None:
    error = rejected({"type": "identify", "userId": "", "anonymousId": None})
    assert pointers(error) == {"/userId"}


def test_unknown_type_lists_the_valid_ones() -> None:
    error = rejected(track(type="purchase"))
    assert pointers(error) == {"/type"}
    for kind in MESSAGE_TYPES:
        assert kind in error.errors[0].reason


def test_missing_type_without_default_is_an_error() -> None:
    message = track()
    del message["type"]
    assert pointers(rejected(message)) == {"/type"}
    assert validate_message(message, default_type="track")["type"] == "track"


def test_explicit_type_wins_over_default_type() -> None:
    assert validate_message(track(), default_type="page")["type"] == "track"


@pytest.mark.parametrize("value", [[], "a@b.c", 3, True])
def test_non_object_properties(value: Any) -> None:
    error = rejected(track(properties=value))
    assert pointers(error) == {"/properties"}


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "", "1e5", "12:00"])
def test_bad_timestamp(value: str) -> None:
    error = rejected(track(timestamp=value))
    assert error.errors == [FieldError("/timestamp", "not an ISO-8601 timestamp or epoch number")]


def test_track_needs_a_non_empty_string_event() -> None:
    message = track()
    del message["event"]
    assert rejected(message).errors == [FieldError("/event", "is required on a track message")]
    assert pointers(rejected(track(event=""))) == {"/event"}
    assert pointers(rejected(track(event=12))) == {"/event"}


def test_group_and_alias_required_fields() -> None:
    assert pointers(rejected({"type": "group", "userId": "u"})) == {"/groupId"}
    error = rejected({"type": "alias", "userId": "u"})
    assert pointers(error) == {"/previousId"}
    valid = validate_message({"type": "alias", "previousId": 7, "userId": 8})
    assert (valid["previousId"], valid["userId"]) == ("7", "8")


def test_nested_pointers_and_several_errors_sorted() -> None:
    message = track(
        context={"page": {"url": 5}, "ip": ["1.2.3.4"]},
        integrations={"All": True, "A/B": "yes"},
        properties="x",
    )
    error = rejected(message, line=7, source="events.jsonl")
    assert [e.pointer for e in error.errors] == [
        "/context/ip",
        "/context/page/url",
        "/integrations/A~1B",
        "/properties",
    ]
    assert str(error).startswith("events.jsonl:7: /context/ip: must be a string, got array; ")
    assert error.line == 7 and error.source == "events.jsonl"


def test_error_string_omits_absent_location() -> None:
    error = rejected(track(properties=1))
    assert str(error) == "/properties: must be an object, got number"
    assert (
        str(rejected(track(properties=1), line=3))
        == "3: /properties: must be an object, got number"
    )


def test_non_object_message() -> None:
    error = rejected(["track"], source="f")
    assert str(error) == "f: a message must be a JSON object, got array"


def test_errors_never_echo_values() -> None:
    email, phone = "jane.doe@example.com", "+14155550100"
    message = {
        "type": email,
        "userId": [email],
        "properties": phone,
        "traits": email,
        "timestamp": phone + "x",
        "context": {"page": {"url": [phone]}, "traits": email},
        "integrations": {"TikTok Conversions": email},
    }
    text = str(rejected(message))
    assert email not in text and phone not in text


def test_message_error_is_a_value_error_and_prefixable() -> None:
    error = rejected(track(properties=1), line=2, source="s")
    assert isinstance(error, ValueError)
    moved = error.prefixed("/batch/4")
    assert str(moved) == "s:2: /batch/4/properties: must be an object, got number"


# --------------------------------------------------------------------------- normalization


def test_result_is_a_new_dict_and_input_is_untouched() -> None:
    message = track(userId=42, anonymousId=None, context={"ip": "1.2.3.4"})
    before = copy.deepcopy(message)
    result = validate_message(message)
    assert message == before
    assert result is not message
    assert result["userId"] == "42" and "anonymousId" not in result


def test_numeric_ids_are_stringified_like_segment_clients() -> None:
    result = validate_message({"type": "group", "userId": 5.0, "groupId": 12, "anonymousId": 1.5})
    assert (result["userId"], result["groupId"], result["anonymousId"]) == ("5", "12", "1.5")


def test_derived_message_id_is_deterministic_and_ignores_transport_fields() -> None:
    first = validate_message(track(sentAt="2024-01-01T00:00:00Z"))
    again = validate_message(track(sentAt="2024-02-01T00:00:00Z", writeKey="k"))
    other = validate_message(track(event="Other"))
    assert first["messageId"] == again["messageId"] != other["messageId"]
    assert uuid.UUID(first["messageId"]).version == 5


def test_given_message_id_is_kept() -> None:
    assert validate_message(track(messageId="m-1"))["messageId"] == "m-1"


def test_timestamp_sources_in_order() -> None:
    ts = validate_message(track(timestamp=1714566600250, originalTimestamp="2000-01-01"))
    assert ts["timestamp"] == "2024-05-01T12:30:00.250Z"
    skew = validate_message(
        track(
            originalTimestamp="2024-05-01T12:00:10+02:00",
            sentAt="2024-05-01T10:00:20Z",
            receivedAt="2024-05-01T10:00:05.5Z",
        )
    )
    # received - (sent - original) = 10:00:05.5 - 10s
    assert skew["timestamp"] == "2024-05-01T09:59:55.500Z"
    original = validate_message(track(originalTimestamp="2024-05-01T12:00:00+0530"))
    assert original["timestamp"] == "2024-05-01T06:30:00.000Z"
    received = validate_message(track(receivedAt=1714566600))
    assert received["timestamp"] == "2024-05-01T12:30:00.000Z"


def test_timestamp_defaults_to_now() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    stamped = parse_timestamp(validate_message(track())["timestamp"])
    assert before.timestamp() <= stamped <= datetime.now(UTC).timestamp() + 1


def test_event_time_is_whole_seconds() -> None:
    message = validate_message(track(timestamp="2024-05-01T12:30:00.999Z"))
    assert event_time(message) == 1714566600


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:30:00Z", 1714566600.0),
        ("2024-05-01T12:30:00+00:00", 1714566600.0),
        ("2024-05-01T18:00:00+0530", 1714566600.0),
        ("2024-05-01T04:30:00-08:00", 1714566600.0),
        ("2024-05-01T12:30:00.123456789Z", 1714566600.123456),
        ("2024-05-01T12:30:00.1Z", 1714566600.1),
        ("2024-05-01T12:30:00", 1714566600.0),  # naive = UTC
        ("2024-05-01", 1714521600.0),
        ("1714566600", 1714566600.0),
        ("1714566600250", 1714566600.25),
        (1714566600, 1714566600.0),
        (1714566600.5, 1714566600.5),
        (1714566600250, 1714566600.25),
        (1714566600250.0, 1714566600.25),
    ],
)
def test_parse_timestamp_forms(text: str | int | float, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value", ["", "soon", "2024-02-30", "1e309", float("nan"), float("inf"), True, 10**20]
)
def test_parse_timestamp_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp or epoch number"):
        parse_timestamp(value)


_aware = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.builds(
        lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60)
    ),
)


@settings(max_examples=300)
@given(_aware)
def test_parse_timestamp_round_trips_iso_with_offsets(moment: datetime) -> None:
    assert parse_timestamp(moment.isoformat()) == pytest.approx(moment.timestamp(), abs=1e-6)


@settings(max_examples=300)
@given(st.integers(10**11 + 1, 4 * 10**12))
def test_parse_timestamp_round_trips_epoch_ms(ms: int) -> None:
    assert parse_timestamp(ms) == pytest.approx(ms / 1000, abs=1e-6)
    assert parse_timestamp(str(ms)) == pytest.approx(ms / 1000, abs=1e-6)


# --------------------------------------------------------------------------- batches


def test_expand_batch_merges_envelope_item_wins() -> None:
    envelope = {
        "batch": [
            {
                "type": "track",
                "event": "A",
                "userId": "u",
                "context": {"library": {"version": "9"}},
            },
            {
                "type": "identify",
                "userId": "u",
                "integrations": {"All": False},
                "sentAt": "2024-01-02T00:00:00Z",
            },
            "not a message",
        ],
        "context": {"library": {"name": "analytics-python", "version": "2"}, "ip": "1.2.3.4"},
        "integrations": {"All": True, "TikTok Conversions": True},
        "sentAt": "2024-01-01T00:00:00Z",
        "writeKey": "secret",
    }
    first, second, third = expand_batch(envelope)
    assert first["context"] == {
        "library": {"name": "analytics-python", "version": "9"},
        "ip": "1.2.3.4",
    }
    assert first["integrations"] == {"All": True, "TikTok Conversions": True}
    assert first["sentAt"] == "2024-01-01T00:00:00Z"
    assert second["integrations"] == {"All": False, "TikTok Conversions": True}
    assert second["sentAt"] == "2024-01-02T00:00:00Z"
    assert third == "not a message"
    assert "writeKey" not in first
    assert envelope["batch"][0]["context"] == {"library": {"version": "9"}}  # not mutated


def test_expand_batch_rejects_bad_envelopes() -> None:
    assert is_batch({"batch": []}) and not is_batch({"batch": [], "type": "track"})
    with pytest.raises(MessageError) as info:
        expand_batch({"batch": {}, "context": [], "sentAt": "later"})
    assert pointers(info.value) == {"/batch", "/context", "/sentAt"}


# --------------------------------------------------------------------------- properties


@settings(max_examples=300)
@given(valid_messages())
def test_every_generated_valid_message_validates(message: dict[str, Any]) -> None:
    result = validate_message(message)
    assert result["type"] in MESSAGE_TYPES
    assert isinstance(result["messageId"], str) and result["messageId"]
    assert result["timestamp"].endswith("Z")
    for key in ("userId", "anonymousId", "previousId", "groupId"):
        assert key not in result or isinstance(result[key], str)


@settings(max_examples=300)
@given(valid_messages())
def test_validation_is_idempotent(message: dict[str, Any]) -> None:
    once = validate_message(message)
    assert validate_message(once) == once


@settings(max_examples=300)
@given(invalid_messages())
def test_every_generated_invalid_message_names_its_pointer(
    case: tuple[dict[str, Any], str],
) -> None:
    message, pointer = case
    error = rejected(message, line=1, source="t")
    assert pointer in pointers(error), str(error)


@settings(max_examples=100)
@given(ecommerce_track_messages())
def test_ecommerce_messages_validate(message: dict[str, Any]) -> None:
    assert validate_message(message)["properties"] == message["properties"]


_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
_KEYS = (
    "type",
    "userId",
    "anonymousId",
    "messageId",
    "timestamp",
    "context",
    "integrations",
    "properties",
    "traits",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "channel",
    "version",
    "writeKey",
)
_CONTEXT_KEYS = ("ip", "page", "traits", "active", "groupId", "library", "userAgent")


def _mutate(message: dict[str, Any], where: str, key: str, value: Any) -> dict[str, Any]:
    message = dict(message)
    if where == "top":
        message[key] = value
    elif where == "drop":
        message.pop(key, None)
    elif where == "context":
        message["context"] = {**(message.get("context") or {}), key: value}
    else:
        message["context"] = {**(message.get("context") or {}), "page": {key: value}}
    return message


_mutated = st.builds(
    _mutate,
    valid_messages(),
    st.sampled_from(("top", "drop", "context", "page")),
    st.sampled_from(_KEYS + _CONTEXT_KEYS + ("url", "referrer")),
    _json,
)


_json_messages = st.one_of(
    valid_messages(),
    invalid_messages().map(lambda case: case[0]),
    _mutated,
    _mutated.flatmap(
        lambda first: st.builds(
            _mutate,
            st.just(first),
            st.sampled_from(("top", "drop", "context", "page")),
            st.sampled_from(_KEYS + _CONTEXT_KEYS + ("url", "referrer", "title")),
            _json,
        )
    ),
)


@settings(max_examples=500)
@given(_json_messages)
def test_fast_path_agrees_with_the_schema(message: dict[str, Any]) -> None:
    # On what JSON decoding yields, the scan decides exactly as the schema does.
    assert bool(_scan(message)) == _message_validator().is_valid(message)


class _Text(str):
    pass


class _Object(dict[str, Any]):
    pass


# Values JSON decoding never yields (a subclass, a tuple, a bool where a number goes):
# the scan leaves them to the schema, so it can never accept what the schema rejects.
_not_json = st.one_of(
    st.builds(_Text, st.text(max_size=3)),
    st.builds(_Object),
    st.tuples(st.integers()),
    st.booleans(),
    st.builds(bytes, st.binary(max_size=2)),
)
_odd_messages = st.builds(
    _mutate,
    valid_messages(),
    st.sampled_from(("top", "context", "page")),
    st.sampled_from(_KEYS + _CONTEXT_KEYS + ("url", "referrer", "title")),
    _not_json,
)


@settings(max_examples=300)
@given(_odd_messages)
def test_fast_path_never_accepts_what_the_schema_rejects(message: dict[str, Any]) -> None:
    if _scan(message):
        assert _message_validator().is_valid(message)


@settings(max_examples=500)
@given(_json_messages)
def test_a_clean_scan_means_nothing_to_normalize(message: dict[str, Any]) -> None:
    # validate_message skips the null-drop and id-to-string loops on a clean scan: they
    # would have changed nothing.
    if _scan(message) == _CLEAN:
        assert not [k for k, v in message.items() if v is None and k in _NULLABLE]
        assert all(isinstance(message.get(k), str | None) for k in _ID_FIELDS)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"userId": 42}, {"userId": "42"}),
        ({"userId": 42.0, "anonymousId": None}, {"userId": "42"}),
        ({"groupId": 7}, {"groupId": "7"}),  # unconstrained on a track call, still an id
        ({"previousId": 1.5}, {"previousId": "1.5"}),
        ({"channel": None, "context": None}, {}),
        ({"userId": _Text("u-1")}, {"userId": "u-1"}),  # a subclass: the schema decides
    ],
)
def test_normalization_runs_whenever_the_scan_saw_something(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    message = {"type": "track", "event": "Viewed", "userId": "u-1", **fields}
    result = validate_message(message)
    for key, value in expected.items():
        assert result[key] == value and isinstance(result[key], str)
    assert not [k for k, v in result.items() if v is None]


# --------------------------------------------------------------------------- envelopes

_ENVELOPE_KEYS = ("batch", "sentAt", "writeKey", "context", "integrations", "extra")
_good_envelopes = st.fixed_dictionaries(
    {"batch": st.lists(valid_messages(), max_size=2)},
    optional={
        "sentAt": st.one_of(st.none(), st.just("2024-01-01T00:00:00Z"), st.integers()),
        "writeKey": st.one_of(st.none(), st.text(max_size=3)),
        "context": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {}, optional={"ip": st.just("1.2.3.4"), "library": st.just({"name": "x"})}
            ),
        ),
        "integrations": st.one_of(
            st.none(), st.dictionaries(st.text(max_size=3), st.booleans(), max_size=2)
        ),
    },
)


def _mutate_envelope(envelope: dict[str, Any], where: str, key: str, value: Any) -> Any:
    envelope = dict(envelope)
    if where == "top":
        envelope[key] = value
    elif where == "drop":
        envelope.pop(key, None)
    elif where == "context":
        envelope["context"] = {**(envelope.get("context") or {}), key: value}
    elif where == "page":
        envelope["context"] = {**(envelope.get("context") or {}), "page": {key: value}}
    elif where == "integrations":
        envelope["integrations"] = {**(envelope.get("integrations") or {}), key: value}
    else:
        return [envelope]  # not an object at all
    return envelope


def _envelopes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        _mutate_envelope,
        _good_envelopes,
        st.sampled_from(("top", "drop", "context", "page", "integrations", "list")),
        st.sampled_from(_ENVELOPE_KEYS + _CONTEXT_KEYS + ("url", "All")),
        values,
    )


@settings(max_examples=500)
@given(st.one_of(_good_envelopes, _envelopes(_json)))
def test_envelope_fast_path_agrees_with_the_schema(envelope: Any) -> None:
    # On what JSON decoding yields, the mirror decides exactly as the batch schema does.
    assert _envelope_valid(envelope) == _batch_validator().is_valid(envelope)


@settings(max_examples=300)
@given(_envelopes(_not_json))
def test_envelope_fast_path_never_accepts_what_the_schema_rejects(envelope: Any) -> None:
    if _envelope_valid(envelope):
        assert _batch_validator().is_valid(envelope)


@given(_envelopes(_json))
def test_expand_batch_refuses_exactly_the_envelopes_the_schema_refuses(envelope: Any) -> None:
    assume(isinstance(envelope, dict))  # expand_batch takes a mapping (the intake checks)
    valid = _batch_validator().is_valid(envelope)
    try:
        expand_batch(envelope)
    except MessageError as error:
        # Refused for the schema's reasons, or for an unreadable sentAt (checked apart).
        assert not valid or {e.pointer for e in error.errors} == {"/sentAt"}
    else:
        assert valid


def _moment_or_error(parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except ValueError as error:
        return ("refused", str(error))


_time_texts = st.one_of(
    st.text(max_size=12),
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda moment: moment.isoformat()),
    st.integers(-(10**13), 10**13).map(str),
    st.sampled_from(["2024-01-01T00:00:00.000Z", " 1700000000 ", "2024-13-01", "1e3"]),
)


@given(_time_texts)
def test_remembered_text_times_equal_parsing_afresh(text: str) -> None:
    fresh = _moment_or_error(_to_datetime, text)
    assert _moment_or_error(_text_datetime, text) == fresh
    assert _moment_or_error(_text_datetime, text) == fresh  # and again, from the cache

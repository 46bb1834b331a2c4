"""The timestamp fast paths equal the general datetime routes.

``iso_utc_seconds`` (used by ``to_unix_seconds``, ``event_time`` and
``validate_message``) answers only for ``YYYY-MM-DDTHH:MM:SS[.f]Z`` from 1970 on and
must give exactly what ``datetime.fromisoformat`` gives; for every other text it must
answer ``None`` so the caller takes the general route.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.mapping.coerce import CoerceError, to_unix_seconds
from cdp_tiktok.messages import (
    MessageError,
    event_time,
    format_timestamp,
    iso_utc_seconds,
    parse_timestamp,
    validate_message,
)

_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z")


def reference(text: str) -> int | None:
    """The slow definition: the ASCII form, read by datetime, from 1970 on."""
    if not _FORM.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)
    except ValueError:
        return None
    seconds = math.floor(moment.timestamp())
    return seconds if seconds >= 0 else None


moments = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(9999, 12, 31))


def iso_z(moment: datetime, digits: int) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond % 1000:03d}"[:digits]
    return text + "Z"


@settings(max_examples=500)
@given(moments, st.integers(0, 9))
def test_the_form_gives_what_datetime_gives(moment: datetime, digits: int) -> None:
    text = iso_z(moment, digits)
    assert iso_utc_seconds(text) == reference(text)
    assert iso_utc_seconds(text) == reference(text)  # second call: served from the table


@settings(max_examples=300)
@given(moments, st.integers(0, 3))
def test_millisecond_texts_equal_the_float_route(moment: datetime, digits: int) -> None:
    text = iso_z(moment, digits)
    if moment.year < 1970:
        assert iso_utc_seconds(text) is None
        return
    assert iso_utc_seconds(text) == math.floor(parse_timestamp(text))
    assert event_time({"timestamp": text}) == math.floor(parse_timestamp(text))


ALPHABET = "0123456789-T:.Z+ tz\u0663\uff11/"


@settings(max_examples=1000)
@given(moments, st.integers(0, 9), st.data())
def test_a_damaged_text_is_refused_or_read_right(
    moment: datetime, digits: int, data: st.DataObject
) -> None:
    text = iso_z(moment, digits)
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        change = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        char = data.draw(st.sampled_from(ALPHABET))
        if change == "replace" and at < len(text):
            text = text[:at] + char + text[at + 1 :]
        elif change == "insert":
            text = text[:at] + char + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    assert iso_utc_seconds(text) == reference(text)


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T00:00:00Z",  # no such day
        "2023-02-29T00:00:00.000Z",
        "2024-01-01T24:00:00.000Z",
        "2024-01-01T23:60:00.000Z",
        "2024-01-01T23:59:60.000Z",
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",  # before 1970
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.0000000000Z",  # ten fraction digits
        "2024-01-01 00:00:00.000Z",
        "2024-01-01T00:00:00.000",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:00:0\u0663.000Z",  # a non-ASCII digit
        "\u0662024-01-01T00:00:00.000Z",
        "2024-01-01T00:00:00.000Zjunk",
        "2024-01-01T00:00",
        "",
    ],
)
def test_other_texts_take_the_general_route(text: str) -> None:
    assert iso_utc_seconds(text) is None
    expected: int | str = "refused"
    try:
        seconds = math.floor(parse_timestamp(text))
    except ValueError:
        pass
    else:
        if seconds >= 0:
            expected = seconds
    try:
        got: int | str = to_unix_seconds(text)
    except CoerceError:
        got = "refused"
    assert got == expected


def test_the_minute_table_is_bounded() -> None:
    from cdp_tiktok import messages

    start = datetime(2030, 1, 1)
    for minute in range(messages._MINUTE_CACHE_SIZE + 10):
        text = iso_z(start + timedelta(minutes=minute), 3)
        assert iso_utc_seconds(text) == reference(text)
    assert len(messages._MINUTE_SECONDS) <= messages._MINUTE_CACHE_SIZE


@settings(max_examples=300)
@given(moments, st.integers(0, 9))
def test_validate_keeps_a_canonical_timestamp_as_the_slow_route_writes_it(
    moment: datetime, digits: int
) -> None:
    text = iso_z(moment, digits)
    message = {"type": "track", "event": "E", "userId": "u", "timestamp": text}
    slow = format_timestamp(datetime.fromisoformat(text))
    assert validate_message(message)["timestamp"] == slow


@pytest.mark.parametrize("text", ["2024-02-30T00:00:00.000Z", "2024-01-01T24:00:00.000Z"])
def test_validate_still_refuses_a_canonical_looking_impossible_time(text: str) -> None:
    with pytest.raises(MessageError):
        validate_message({"type": "track", "event": "E", "userId": "u", "timestamp": text})


_texts = st.one_of(
    st.builds(iso_z, moments, st.integers(0, 9)),
    st.sampled_from(["", "2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00", "soon"]),
)


@settings(max_examples=300)
@given(st.lists(_texts, min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=12))
def test_answers_from_memory_are_the_answers(texts: list[str], order: list[int]) -> None:
    # The same string objects asked again, in any order, interleaved with copies.
    for index in order:
        text = texts[index % len(texts)]
        assert iso_utc_seconds(text) == reference(text)
        copy = "".join(text)  # equal text, another object (or the same, when interned)
        assert iso_utc_seconds(copy) == reference(copy)

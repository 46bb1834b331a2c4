"""Hypothesis strategies for Segment-spec messages (tests and the conformance suite).

Generated messages look like what Segment's clients send: realistic ``context`` (IPv4
and IPv6 addresses, user agents, locales, a page URL sometimes carrying a ``ttclid``,
traits with e-mail, phone, names and address, device/os/app for mobile), ISO-8601
timestamps with various offsets or epoch numbers, numeric or string ids, e-commerce
properties with lowercase currencies and numeric strings. They stay small so property
tests run fast.

* every message from :func:`valid_messages` (and the per-type strategies) is accepted
  by :func:`cdp_tiktok.messages.validate_message`;
* every ``(message, pointer)`` from :func:`invalid_messages` is rejected with a
  :class:`~cdp_tiktok.messages.FieldError` whose pointer is ``pointer``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from cdp_tiktok.messages import MESSAGE_TYPES
from cdp_tiktok.tiktok.catalog import name_key

__all__ = [
    "ECOMMERCE_EVENTS",
    "alias_messages",
    "contexts",
    "ecommerce_track_messages",
    "group_messages",
    "identify_messages",
    "invalid_messages",
    "messages_for",
    "name_variants",
    "page_messages",
    "screen_messages",
    "timestamps",
    "track_messages",
    "track_messages_named",
    "valid_messages",
]

Message = dict[str, Any]

# Event names of Segment's e-commerce spec v2 (segment-spec §8), with what they carry.
ECOMMERCE_EVENTS: dict[str, str] = {
    "Products Searched": "search",
    "Product List Viewed": "list",
    "Product Clicked": "single",
    "Product Viewed": "single",
    "Product Added": "single",
    "Product Removed": "single",
    "Cart Viewed": "list",
    "Checkout Started": "order",
    "Payment Info Entered": "payment",
    "Order Completed": "order",
    "Order Refunded": "order",
    "Product Added to Wishlist": "single",
    "Product Reviewed": "review",
}
_OTHER_EVENTS = (
    "Signed Up",
    "Signed In",
    "Trial Started",
    "Application Installed",
    "Application Opened",
    "Form Submitted",
    "Video Played",
    # tracks already named as TikTok events, as some sites send them
    "ViewContent",
    "complete_payment",
    "Subscribe",
)

_ALNUM = string.ascii_letters + string.digits
_tokens = st.text(alphabet=_ALNUM, min_size=6, max_size=24)
_words = st.sampled_from(("shoes", "Blue Shirt", "Café Crème", "gift card", "日本茶", "Size 10"))
_OFFSETS = (
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(-timedelta(hours=8)),
)


def _format_time(moment: datetime, style: int) -> str | int | float:
    if style == 0:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{moment.microsecond // 1000:03d}Z"
        )
    if style == 1:
        return moment.isoformat()  # offset form, microseconds when present
    if style == 2:
        return moment.isoformat(timespec="milliseconds")
    if style == 3:
        return int(moment.timestamp() * 1000)  # epoch milliseconds
    return int(moment.timestamp())  # epoch seconds


def timestamps() -> SearchStrategy[str | int | float]:
    """Times between 2015 and 2035 as ISO-8601 strings (Z or offsets) or epoch numbers."""
    moments = st.datetimes(
        min_value=datetime(2015, 1, 1),
        max_value=datetime(2035, 1, 1),
        timezones=st.sampled_from(_OFFSETS),
    )
    return st.builds(_format_time, moments, st.integers(0, 4))


def _emails() -> SearchStrategy[str]:
    local = st.sampled_from(("jane.doe", "John.Smith", "a+tag", "zoë"))
    domain = st.sampled_from(("example.com", "Example.COM", "mail.example.org"))
    pad = st.sampled_from(("", " "))
    return st.builds(lambda p, l_, d: f"{p}{l_}@{d}{p}", pad, local, domain)


_phones = st.sampled_from(
    ("+1 (415) 555-0100", "+44 20 7946 0958", "4155550100", "+33612345678", "06 12 34 56 78")
)
_user_agents = st.sampled_from(
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15",
        "analytics-android/4.10",
    )
)
_ips = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))


def _page_urls() -> SearchStrategy[str]:
    path = st.sampled_from(("", "products/42", "cart", "checkout?step=2"))
    ttclid = st.one_of(st.none(), _tokens)

    def build(p: str, click: str | None) -> str:
        url = f"https://shop.example.com/{p}"
        if click is None:
            return url
        return f"{url}{'&' if '?' in url else '?'}ttclid={click}"

    return st.builds(build, path, ttclid)


def _traits() -> SearchStrategy[Message]:
    address = st.fixed_dictionaries(
        {},
        optional={
            "city": st.sampled_from(("Paris", "New York", "São Paulo")),
            "country": st.sampled_from(("US", "fr", "Brazil")),
            "postalCode": st.sampled_from(("94105", "75001", "SW1A 1AA")),
            "state": st.sampled_from(("CA", "NY", "")),
            "street": st.just("1 Main St"),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "email": _emails(),
            "phone": _phones,
            "firstName": st.sampled_from(("Jane", " Zoë ")),
            "last_name": st.sampled_from(("Doe", "O'Brien")),
            "address": address,
        },
    )


def contexts() -> SearchStrategy[Message]:
    """Segment ``context`` objects as browser, server and mobile libraries fill them."""
    page = st.fixed_dictionaries(
        {"url": _page_urls()},
        optional={
            "path": st.just("/products/42"),
            "referrer": st.sampled_from(("", "https://www.tiktok.com/")),
            "title": _words,
            "search": st.sampled_from(("", "?q=shoes")),
        },
    )
    device = st.fixed_dictionaries(
        {},
        optional={
            "id": st.uuids().map(str),
            "advertisingId": st.uuids().map(str),
            "adTrackingEnabled": st.booleans(),
            "manufacturer": st.sampled_from(("Apple", "Samsung")),
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "ip": _ips,
            "userAgent": _user_agents,
            "locale": st.sampled_from(("en-US", "fr-FR", "pt_BR")),
            "timezone": st.sampled_from(("Europe/Paris", "America/New_York")),
            "page": page,
            "traits": _traits(),
            "library": st.fixed_dictionaries(
                {"name": st.sampled_from(("analytics.js", "analytics-python")), "version": _tok()}
            ),
            "device": device,
            "os": st.fixed_dictionaries(
                {"name": st.sampled_from(("iOS", "Android")), "version": st.just("17.4")}
            ),
            "app": st.fixed_dictionaries(
                {"name": st.just("Shop"), "version": st.just("3.2.1"), "build": st.just("321")}
            ),
            "campaign": st.fixed_dictionaries({"source": st.just("tiktok")}),
        },
    )


def _tok() -> SearchStrategy[str]:
    return st.sampled_from(("1.0.0", "2.11.3", "4"))


def _integrations() -> SearchStrategy[Message]:
    tiktok = st.fixed_dictionaries({}, optional={"ttclid": _tokens, "ttp": _tokens})
    return st.fixed_dictionaries(
        {},
        optional={
            "All": st.booleans(),
            "TikTok Conversions": st.one_of(st.booleans(), tiktok),
            "Salesforce": st.just(False),
        },
    )


_user_ids = st.one_of(
    st.builds(lambda n: f"user-{n}", st.integers(1, 10**6)),
    st.integers(1, 10**9),
    st.uuids().map(str),
)
_anonymous_ids = st.uuids().map(str)


def _identity() -> SearchStrategy[Message]:
    return st.one_of(
        st.fixed_dictionaries({"userId": _user_ids}),
        st.fixed_dictionaries({"anonymousId": _anonymous_ids}),
        st.fixed_dictionaries({"userId": _user_ids, "anonymousId": _anonymous_ids}),
        st.fixed_dictionaries({"userId": _user_ids, "anonymousId": st.none()}),
    )


def _common() -> SearchStrategy[Message]:
    return st.fixed_dictionaries(
        {},
        optional={
            "messageId": st.uuids().map(str),
            "timestamp": timestamps(),
            "originalTimestamp": timestamps(),
            "sentAt": timestamps(),
            "context": contexts(),
            "integrations": _integrations(),
            "channel": st.sampled_from(("browser", "server", "mobile")),
            "version": st.sampled_from((2, "1.1")),
        },
    )


def _message(kind: str, specific: SearchStrategy[Message]) -> SearchStrategy[Message]:
    def build(identity: Message, common: Message, own: Message) -> Message:
        return {"type": kind, **common, **identity, **own}

    return st.builds(build, _identity(), _common(), specific)


_small_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    _words,
)
_properties = st.dictionaries(
    st.sampled_from(("plan", "source", "step", "label", "email", "phone", "count")),
    _small_values,
    max_size=3,
)


def track_messages(events: Sequence[str] | None = None) -> SearchStrategy[Message]:
    """``track`` messages; events drawn from ``events`` or from spec and free-form names."""
    names = (
        st.sampled_from(tuple(events))
        if events
        else st.one_of(
            st.sampled_from(tuple(ECOMMERCE_EVENTS) + _OTHER_EVENTS),
            st.text(min_size=1, max_size=20),
        )
    )
    own = st.fixed_dictionaries({"event": names}, optional={"properties": _properties})
    return _message("track", own)


_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_CASES: tuple[Callable[[str], str], ...] = (str.lower, str.upper, str.title, str)


def name_variants(name: str) -> SearchStrategy[str]:
    """``name`` as people write it: its words (split at spaces, ``_``, ``-`` and camel
    case: ``ViewContent`` is ``View Content``) each in lower, upper, title or original
    case, joined by one of space, ``_``, ``-`` or nothing (``order_completed``,
    ``Order-Completed``, ``ORDER COMPLETED``, ``viewcontent``)."""
    words = _WORDS.findall(name) or [name]
    cases = st.lists(st.sampled_from(_CASES), min_size=len(words), max_size=len(words))
    separators = st.sampled_from((" ", "_", "-", ""))
    return st.builds(
        lambda chosen, sep: sep.join(case(w) for case, w in zip(chosen, words, strict=True)),
        cases,
        separators,
    )


def track_messages_named(names: Sequence[str]) -> SearchStrategy[Message]:
    """``track`` messages whose event is one of ``names`` in any spelling
    (:func:`name_variants`); e-commerce names carry their spec properties."""

    def with_name(name: str) -> SearchStrategy[Message]:
        shape = ECOMMERCE_EVENTS.get(name)
        properties = _properties if shape is None else _ecommerce_properties(shape)
        return st.fixed_dictionaries({"event": name_variants(name), "properties": properties})

    return _message("track", st.sampled_from(tuple(names)).flatmap(with_name))


def identify_messages() -> SearchStrategy[Message]:
    """``identify`` messages with reserved traits (e-mail, phone, names, address)."""
    return _message("identify", st.fixed_dictionaries({}, optional={"traits": _traits()}))


def page_messages() -> SearchStrategy[Message]:
    """``page`` messages with ``name``/``category`` and page properties."""
    properties = st.fixed_dictionaries(
        {},
        optional={
            "url": _page_urls(),
            "path": st.just("/products/42"),
            "title": _words,
            "referrer": st.just("https://www.tiktok.com/"),
        },
    )
    own = st.fixed_dictionaries(
        {},
        optional={"name": _words, "category": st.just("Shop"), "properties": properties},
    )
    return _message("page", own)


def screen_messages() -> SearchStrategy[Message]:
    """``screen`` messages (mobile) with a screen ``name``."""
    own = st.fixed_dictionaries(
        {}, optional={"name": st.sampled_from(("Home", "Cart")), "properties": _properties}
    )
    return _message("screen", own)


def group_messages() -> SearchStrategy[Message]:
    """``group`` messages with a string or numeric ``groupId`` and company traits."""
    traits = st.fixed_dictionaries(
        {}, optional={"name": st.just("Initech"), "employees": st.integers(1, 5000)}
    )
    own = st.fixed_dictionaries(
        {"groupId": st.one_of(_tokens, st.integers(1, 10**6))}, optional={"traits": traits}
    )
    return _message("group", own)


def alias_messages() -> SearchStrategy[Message]:
    """``alias`` messages: ``previousId`` and ``userId`` always present."""

    def build(common: Message, previous: Any, user: Any, anonymous: str | None) -> Message:
        message: Message = {"type": "alias", **common, "previousId": previous, "userId": user}
        if anonymous is not None:
            message["anonymousId"] = anonymous
        return message

    return st.builds(
        build, _common(), _anonymous_ids, _user_ids, st.one_of(st.none(), _anonymous_ids)
    )


def _money() -> SearchStrategy[float | int | str]:
    amounts = st.decimals(min_value=0, max_value=5000, places=2, allow_nan=False)
    return st.one_of(amounts.map(float), amounts.map(str), st.integers(0, 500))


def _products() -> SearchStrategy[Message]:
    return st.fixed_dictionaries(
        {"product_id": st.one_of(st.integers(1, 10**6), _tokens)},
        optional={
            "sku": st.one_of(_tokens, st.integers(1, 10**6)),
            "name": _words,
            "category": st.sampled_from(("Shoes", "Apparel")),
            "brand": st.just("Acme"),
            "price": _money(),
            "quantity": st.one_of(st.integers(1, 5), st.just("2")),
        },
    )


def _ecommerce_properties(shape: str) -> SearchStrategy[Message]:
    money = {"currency": st.sampled_from(("USD", "usd", "EUR", "eur", "JPY"))}
    if shape == "search":
        query = st.one_of(_words, st.fixed_dictionaries({"q": _words}))
        return st.fixed_dictionaries({"query": query})
    if shape == "single":
        return st.builds(
            lambda product, extra: {**product, **extra},
            _products(),
            st.fixed_dictionaries({}, optional={**money, "value": _money(), "cart_id": _tokens}),
        )
    if shape == "list":
        return st.fixed_dictionaries(
            {"products": st.lists(_products(), min_size=1, max_size=3)},
            optional={"list_id": _tokens, "cart_id": _tokens},
        )
    if shape == "order":
        return st.fixed_dictionaries(
            {"order_id": st.one_of(_tokens, st.integers(1, 10**6))},
            optional={
                **money,
                "revenue": _money(),
                "value": _money(),
                "total": _money(),
                "shipping": _money(),
                "tax": _money(),
                "coupon": st.just("SPRING"),
                "products": st.lists(_products(), min_size=1, max_size=3),
            },
        )
    if shape == "payment":
        return st.fixed_dictionaries(
            {"checkout_id": _tokens},
            optional={"order_id": _tokens, "step": st.integers(1, 4)},
        )
    return st.fixed_dictionaries(
        {"product_id": _tokens, "review_id": _tokens, "rating": st.sampled_from(("4", "5"))}
    )


def ecommerce_track_messages() -> SearchStrategy[Message]:
    """``track`` messages for e-commerce spec v2 events with realistic properties."""

    def with_properties(event: str) -> SearchStrategy[Message]:
        return st.fixed_dictionaries(
            {"event": st.just(event), "properties": _ecommerce_properties(ECOMMERCE_EVENTS[event])}
        )

    own = st.sampled_from(tuple(ECOMMERCE_EVENTS)).flatmap(with_properties)
    return _message("track", own)


_PER_TYPE: dict[str, Callable[[], SearchStrategy[Message]]] = {
    "track": lambda: st.one_of(track_messages(), ecommerce_track_messages()),
    "identify": identify_messages,
    "page": page_messages,
    "screen": screen_messages,
    "group": group_messages,
    "alias": alias_messages,
}


def valid_messages(types: Sequence[str] = MESSAGE_TYPES) -> SearchStrategy[Message]:
    """Valid Segment messages of the given ``types``."""
    return st.one_of([_PER_TYPE[kind]() for kind in types])


def _ecommerce_event(event: str) -> SearchStrategy[Message]:
    own = st.fixed_dictionaries(
        {"event": st.just(event), "properties": _ecommerce_properties(ECOMMERCE_EVENTS[event])}
    )
    return _message("track", own)


def messages_for(
    types: Collection[str] | None = None,
    events: Collection[str] | None = None,
    event_keys: Collection[str] | None = None,
) -> SearchStrategy[Message]:
    """Valid messages a rule's trigger index admits (see ``Trigger.types``/``events``/
    ``event_keys``).

    ``types``/``events``/``event_keys`` ``None`` means any. Track events of the
    e-commerce spec are drawn both with realistic properties and with free-form ones;
    names given by ``event_keys`` (``event is named``) in any case and separators. A rule
    indexed on its type and event is reached by every message drawn (used by the
    conformance suite).
    """
    kinds = sorted(set(types) & set(MESSAGE_TYPES)) if types is not None else None
    if events is None and event_keys and (kinds is None or "track" in kinds):
        known = [n for n in (*ECOMMERCE_EVENTS, *_OTHER_EVENTS) if name_key(n) in event_keys]
        covered = {name_key(n) for n in known}
        return track_messages_named(known + sorted(set(event_keys) - covered))
    if events is None or (kinds is not None and "track" not in kinds):
        return valid_messages(kinds if kinds else MESSAGE_TYPES)
    names = sorted(events)
    if not names:
        return valid_messages(kinds if kinds else MESSAGE_TYPES)
    parts = [track_messages(names)]
    parts += [_ecommerce_event(name) for name in names if name in ECOMMERCE_EVENTS]
    return st.one_of(parts)


# --------------------------------------------------------------------------- invalid

_non_objects = st.one_of(
    st.lists(st.integers(), max_size=2), st.text(max_size=5), st.integers(), st.booleans()
)
_non_strings = st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2))
_bad_times = st.sampled_from(
    ("yesterday", "2024-13-45", "not a date", "12:30", "2024/05/01 10:00", "", "1e5")
)


def _with(
    key: str, values: SearchStrategy[Any], pointer: str, base: SearchStrategy[Message]
) -> SearchStrategy[tuple[Message, str]]:
    def build(message: Message, value: Any) -> tuple[Message, str]:
        return {**message, key: value}, pointer

    return st.builds(build, base, values)


def _without(
    keys: Sequence[str], pointer: str, base: SearchStrategy[Message]
) -> SearchStrategy[tuple[Message, str]]:
    def build(message: Message) -> tuple[Message, str]:
        return {k: v for k, v in message.items() if k not in keys}, pointer

    return base.map(build)


def _with_context(
    key: str, values: SearchStrategy[Any], pointer: str
) -> SearchStrategy[tuple[Message, str]]:
    def build(message: Message, value: Any) -> tuple[Message, str]:
        context = message.get("context") or {}
        return {**message, "context": {**context, key: value}}, pointer

    return st.builds(build, valid_messages(), values)


def _bad_page_url() -> SearchStrategy[tuple[Message, str]]:
    def build(message: Message, value: Any) -> tuple[Message, str]:
        context = message.get("context") or {}
        return {**message, "context": {**context, "page": {"url": value}}}, "/context/page/url"

    return st.builds(build, valid_messages(), _non_strings)


def _bad_integration() -> SearchStrategy[tuple[Message, str]]:
    def build(message: Message, key: str, value: Any) -> tuple[Message, str]:
        return {**message, "integrations": {"All": True, key: value}}, f"/integrations/{key}"

    return st.builds(
        build,
        valid_messages(),
        st.sampled_from(("TikTok Conversions", "Salesforce")),
        st.one_of(st.integers(), st.text(max_size=4), st.none(), st.lists(st.booleans())),
    )


def invalid_messages() -> SearchStrategy[tuple[Message, str]]:
    """``(message, pointer)``: a message broken in one way, and the JSON pointer its
    validation error must name.

    Covers: no userId/anonymousId, unknown type, missing type, non-object properties,
    traits or context, bad timestamps, missing/empty/non-string ``event`` on track,
    missing ``groupId``/``previousId``, empty or non-string ``messageId``, non-string ids,
    bad ``context.page``/``context.page.url``/``context.ip``, bad integrations.
    """
    anything = valid_messages()
    tracks = track_messages()
    cases = [
        _without(("userId", "anonymousId"), "/userId", anything),
        _with("type", st.sampled_from(("purchase", "Track", "", "batch")), "/type", anything),
        _without(("type",), "/type", anything),
        _with("properties", _non_objects, "/properties", anything),
        _with("traits", _non_objects, "/traits", identify_messages()),
        _with("context", _non_objects, "/context", anything),
        _with("integrations", _non_objects, "/integrations", anything),
        _with("timestamp", _bad_times, "/timestamp", anything),
        _with("originalTimestamp", _bad_times, "/originalTimestamp", anything),
        _with("timestamp", st.lists(st.integers(), max_size=1), "/timestamp", anything),
        _without(("event",), "/event", tracks),
        _with("event", st.one_of(_non_strings, st.just(""), st.none()), "/event", tracks),
        _without(("groupId",), "/groupId", group_messages()),
        _with("groupId", st.sampled_from(("", None)), "/groupId", group_messages()),
        _without(("previousId",), "/previousId", alias_messages()),
        _with("messageId", st.one_of(st.just(""), st.integers()), "/messageId", anything),
        _with("userId", st.one_of(st.booleans(), st.lists(st.integers())), "/userId", anything),
        _with(
            "anonymousId",
            st.dictionaries(st.text(max_size=2), st.integers()),
            "/anonymousId",
            anything,
        ),
        _with_context("page", _non_objects, "/context/page"),
        _with_context("ip", _non_strings, "/context/ip"),
        _with_context("traits", _non_objects, "/context/traits"),
        _bad_page_url(),
        _bad_integration(),
    ]
    return st.one_of(cases)

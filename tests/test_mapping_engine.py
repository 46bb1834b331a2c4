"""The mapping engine: defaults, match modes, values, filters, loops, caps, events."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdp_tiktok.mapping import MappingSet, load_mapping_set
from cdp_tiktok.settings import TikTokSettings

HEAD = """
version: 1
match: {match}
defaults:
  event_id: messageId
  event_time: timestamp
  page: {{url: context.page.url}}
"""


def mapping(
    tmp_path: Path,
    rules: str,
    *,
    match: str = "first",
    head: str = HEAD,
    filters: dict[str, Callable[..., Any]] | None = None,
    **settings: Any,
) -> MappingSet:
    text = textwrap.dedent(head.format(match=match)).lstrip() + "rules:\n"
    text += textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ") + "\n"
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    return load_mapping_set(
        [tmp_path],
        settings=TikTokSettings(event_source_id="CPIX", **settings),
        filters=filters or {},
    )


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "event": "E",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2025-01-01T00:00:00Z",
        "context": {"page": {"url": "https://shop.example/"}},
    }
    base.update(fields)
    return base


def one(m: MappingSet, msg: dict[str, Any]) -> dict[str, Any]:
    result = m.map(msg)
    assert len(result.events) == 1, (result.events, result.warnings)
    return result.events[0].data


def test_defaults_are_inherited_and_overridden_key_by_key(tmp_path: Path) -> None:
    head = HEAD + "  user: {{external_id: userId, ip: context.ip}}\n"
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Search
          event_id: "'fixed-id'"
          user: {ip: null}
        """,
        head=head,
    )
    data = one(m, message(context={"ip": "203.0.113.9", "page": {"url": "https://x.example/"}}))
    assert data["event_id"] == "fixed-id"
    assert set(data["user"]) == {"external_id"}
    assert data["page"] == {"url": "https://x.example/"}


def test_match_first_and_match_all(tmp_path: Path) -> None:
    rules = """
    - name: a
      when: type == "track"
      event: Search
    - name: b
      when: event == "E"
      event: Lead
    """
    first = mapping(tmp_path, rules, match="first").map(message())
    assert [e.rule for e in first.events] == ["a"]
    every = mapping(tmp_path, rules, match="all").map(message())
    assert [e.data["event"] for e in every.events] == ["Search", "Lead"]


def test_absent_values_are_omitted_and_zero_and_false_are_kept(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Purchase
          limited_data_use: properties.ldu
          properties:
            value: properties.value
            order_id: properties.missing
            description: "Order {{ properties.missing }}"
            shop_id: "{{ properties.missing }}"
            empty_text: properties.blank
            empty_list: properties.none_list
            nested: {a: properties.missing, b: {c: properties.missing}}
            flag: properties.flag
        """,
    )
    data = one(
        m,
        message(properties={"value": 0, "ldu": False, "blank": "", "none_list": [], "flag": False}),
    )
    assert data["properties"] == {"value": 0, "flag": False}
    assert data["limited_data_use"] is False
    assert "None" not in str(data)


def test_uncoercible_field_is_dropped_with_a_warning_and_the_event_is_kept(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: buy
          when: type == "track"
          event: Purchase
          properties:
            value: properties.total
            currency: properties.currency
            order_id: properties.order_id
        """,
    )
    result = m.map(message(properties={"total": "12,50", "currency": "EUR", "order_id": 7}))
    assert result.events[0].data["properties"] == {"currency": "EUR", "order_id": "7"}
    assert result.warnings == [
        "rule buy: properties.value: text that is not a plain decimal number; field dropped"
    ]


def test_loops_fixed_lists_and_item_typing(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Purchase
          properties:
            contents:
              for: p in properties.products
              item: {content_id: [p.product_id, p.sku], price: p.price, quantity: p.quantity}
            tags: {list: [properties.a, "'fixed'", properties.missing]}
        """,
    )
    data = one(
        m,
        message(
            properties={
                "a": "x",
                "products": [
                    {"product_id": 1, "price": "2.5", "quantity": "2"},
                    {"sku": "S", "price": "bad"},
                    {},
                    "not an object",
                ],
            }
        ),
    )
    assert data["properties"]["contents"] == [
        {"content_id": "1", "price": 2.5, "quantity": 2},
        {"content_id": "S"},
    ]
    assert data["properties"]["tags"] == ["x", "fixed"]


def test_contents_are_capped_with_a_warning(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Purchase
          properties:
            contents:
              for: p in properties.products
              item: {content_id: p.sku}
        """,
    )
    result = m.map(message(properties={"products": [{"sku": str(i)} for i in range(1005)]}))
    assert len(result.events[0].data["properties"]["contents"]) == 1000
    assert any("1005 items, only the first 1000" in w for w in result.warnings)


def test_filters_on_paths_and_in_templates(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Search
          properties:
            value: properties.cents | cents
            currency: properties.cur | trim | upper
            search_string: properties.q | text
            query: "{{ properties.q | text | lower }}"
            description: properties.missing | default("none given")
            order_id: properties.missing | coalesce(properties.alt, "x")
            shop_id: context.page.url | query_param("shop")
            n: properties.n | number
            i: properties.n | integer
        """,
    )
    data = one(
        m,
        message(
            properties={"cents": 1999, "cur": " eur ", "q": {"B": 1, "a": 2}, "alt": 0, "n": "4"},
            context={"page": {"url": "https://x.example/?shop=S1&x=2"}},
        ),
    )
    assert data["properties"] == {
        "value": 19.99,
        "currency": "EUR",
        "search_string": '{"B":1,"a":2}',
        "query": '{"b":1,"a":2}',
        "description": "none given",
        "order_id": "0",
        "shop_id": "S1",
        "n": 4,
        "i": 4,
    }


def test_plugin_filters_run_on_paths_and_in_templates(tmp_path: Path) -> None:
    def reverse(value: Any) -> Any:
        return str(value)[::-1]

    def broken(value: Any) -> Any:
        raise RuntimeError("secret@example.com")

    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Search
          properties:
            search_string: properties.q | reverse
            query: "{{ properties.q | reverse | upper }}"
            description: properties.q | broken
            order_id: properties.missing | reverse
        """,
        filters={"reverse": reverse, "broken": broken},
    )
    result = m.map(message(properties={"q": "abc"}))
    assert result.events[0].data["properties"] == {"search_string": "cba", "query": "CBA"}
    assert result.warnings == [
        "rule a: properties.description: filter 'broken' failed (RuntimeError); field dropped"
    ]


def test_typed_arithmetic_errors_drop_the_field(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: AddToCart
          properties:
            value: properties.price * properties.quantity
        """,
    )
    assert one(m, message(properties={"price": 2.5, "quantity": 2}))["properties"] == {"value": 5.0}
    result = m.map(message(properties={"price": "2.5", "quantity": 2}))
    assert "properties" not in result.events[0].data
    assert "cannot apply * to text and number" in result.warnings[0]
    result = m.map(message(properties={"quantity": 2}))
    assert "properties" not in result.events[0].data and result.warnings == []


def test_event_data_is_never_template_source(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Search
          properties:
            search_string: properties.q
            query: "{{ properties.q }}"
        """,
    )
    payload = "{{ ''.__class__.__mro__ }}{% for x in range(10**9) %}{% endfor %}"
    data = one(m, message(properties={"q": payload}))
    assert data["properties"] == {"search_string": payload, "query": payload}


def test_the_sandbox_refuses_python_internals_at_run_time() -> None:
    from cdp_tiktok.mapping.compiler import Compiler, EvalError
    from cdp_tiktok.mapping.problems import Reporter

    compiler = Compiler(plugin_filters={}, settings={})
    report = Reporter("x", {})
    # Static checks are what users meet; this goes around them to test the sandbox.
    expr = compiler.parse_expression("properties.q.__class__", report, ())
    assert expr is not None
    value = compiler.compile_node(expr)
    with pytest.raises(EvalError, match="sandbox"):
        value({"properties": {"q": "x"}})


def test_dynamic_custom_event_names_are_checked_at_run_time(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: forward
          when: type == "track"
          event: "{{ event }}"
          custom: true
        """,
    )
    assert one(m, message(event="Quote Requested"))["event"] == "Quote Requested"
    result = m.map(message(event="Checkout"))
    assert result.events == []
    assert "reserved" in result.warnings[0] and "no event sent" in result.warnings[0]


def test_derive_fills_content_ids_num_items_and_currency(tmp_path: Path) -> None:
    head = HEAD + "derive: {{content_ids: true, num_items: true, currency: USD}}\n"
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Purchase
          properties:
            value: properties.total
            contents:
              for: p in properties.products
              item: {content_id: p.sku, quantity: p.quantity}
        - name: b
          when: type == "page"
          event: Pageview
          derive: {currency: null}
          properties: {value: properties.total}
        """,
        head=head,
    )
    data = one(
        m, message(properties={"total": 3, "products": [{"sku": "a", "quantity": 2}, {"sku": "b"}]})
    )
    assert data["properties"] == {
        "value": 3,
        "contents": [{"content_id": "a", "quantity": 2}, {"content_id": "b"}],
        "content_ids": ["a", "b"],
        "num_items": 3,
        "currency": "USD",
    }
    page = one(m, message(type="page", properties={"total": 3}))
    assert page["properties"] == {"value": 3}


def test_web_events_without_a_page_url_are_sent_without_page(tmp_path: Path) -> None:
    m = mapping(tmp_path, '- name: a\n  when: type == "track"\n  event: Search\n')
    result = m.map(message(context={}))
    assert [e.data.get("page") for e in result.events] == [None]
    assert result.warnings == []


def test_require_page_url_skips_web_events_without_one(tmp_path: Path) -> None:
    m = mapping(
        tmp_path, '- name: a\n  when: type == "track"\n  event: Search\n', require_page_url=True
    )
    result = m.map(message(context={}))
    assert result.events == []
    assert result.warnings == [
        "rule a: web events need page.url (require_page_url) and the message gives none; "
        "no event sent"
    ]
    assert len(m.map(message()).events) == 1


def test_fields_are_left_out_where_the_source_does_not_take_them(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """
        - name: a
          when: type == "track"
          event: Search
          app: {app_id: "'123'"}
          user: {ttclid: properties.t, ip: context.ip, idfv: context.device.id}
        """,
        event_source="app",
    )
    warnings = {p.message for p in m.problems}
    assert not any(w.startswith("page ") for w in warnings)  # inherited: left out silently
    assert "user.ttclid is not sent for event_source app" in warnings
    data = one(
        m,
        message(
            properties={"t": "E.C.P.x"},
            context={
                "ip": "198.51.100.1",
                "device": {"id": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
                "page": {"url": "https://x.example/"},
            },
        ),
    )
    assert "page" not in data
    assert data["user"] == {"ip": "198.51.100.1", "idfv": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}
    assert data["app"] == {"app_id": "123"}


def test_stored_keys_fill_missing_keys_and_event_keys_win(tmp_path: Path) -> None:
    head = HEAD + "  user: {{email: properties.email, external_id: userId}}\n"
    m = mapping(tmp_path, '- name: a\n  when: type == "track"\n  event: Search\n', head=head)
    stored = {"email": ["a" * 64], "phone": ["b" * 64], "external_id": ["c" * 64]}
    calls: list[int] = []

    def lookup() -> dict[str, list[str]]:
        calls.append(1)
        return stored

    result = m.map(message(properties={"email": "x@example.com"}), stored_keys=lookup, explain=True)
    user = result.events[0].data["user"]
    assert user["email"] != ["a" * 64] and user["phone"] == ["b" * 64]
    assert user["external_id"] != ["c" * 64]
    assert calls == [1]
    assert any("phone filled from the identity store" in line for line in result.explain)
    assert m.map(message(type="identify"), stored_keys=lookup).events == []
    assert calls == [1]  # no event, no lookup

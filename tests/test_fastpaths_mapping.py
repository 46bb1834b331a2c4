"""The mapping engine's fast paths equal the slow routes they replace.

* arithmetic over paths, constants and filters runs without Jinja and gives the same
  value or the same error as the Jinja route;
* generated readers (shared prefixes read once, as an object or an empty one) give what
  a plain walk of the message gives;
* alternatives whose last option may raise are read inline with exactly the
  first-present/first-error semantics;
* the inline "already the right type" tests only ever skip a coercer that would have
  returned the value unchanged;
* objects built inline in the function of the object (or fixed list) holding them, and
  fixed lists built by generated code, give what the builder calls and the closure
  they replace give: same values, same warnings in the same order;
* generated objects, fixed lists and values (keys tested with ``in`` on hoisted objects,
  filters applied inside the test, constants decided when the code is generated, the
  scope read as a dict) equal a plain interpreter of the field descriptions: same
  values, same key order, same warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from cdp_tiktok.mapping.codegen import (
    _UNCHANGED,
    Field,
    FilterStep,
    Leaf,
    list_builder,
    object_builder,
    value_function,
)
from cdp_tiktok.mapping.coerce import (
    CoerceError,
    to_currency,
    to_integer,
    to_number,
    to_string,
    to_unix_seconds,
)
from cdp_tiktok.mapping.compiler import Compiler, EvalError
from cdp_tiktok.mapping.filters import (
    ABSENT,
    f_default,
    f_lower,
    f_query_param,
    f_text,
    present,
)
from cdp_tiktok.mapping.problems import Reporter

ROOTS = frozenset({"properties", "a", "b", "context", "event"})


def boom(value: Any) -> Any:
    raise RuntimeError("plugin failure")


def _compiler() -> Compiler:
    return Compiler(plugin_filters={"boom": boom}, settings={})


COMPILER = _compiler()

# --- arithmetic ------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0, 0.0, 1e300, -1e300, 2**70]),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3),
)
operands = st.sampled_from(
    [
        "a",
        "b",
        "properties.x",
        "properties.y",
        "properties.missing",
        "context.ip",
        "2",
        "0",
        "1.5",
        "7",
        "'t'",
        "(properties.x | number)",
        "(properties.y | number | default(1))",
        "(a | default(2))",
        "(b | boom)",
        "(properties.missing | boom)",
    ]
)
operators = st.sampled_from(["+", "-", "*", "/", "//", "%", "**"])
expressions = st.recursive(
    operands,
    lambda inner: st.tuples(inner, operators, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    max_leaves=4,
)
scopes = st.fixed_dictionaries(
    {},
    optional={
        "a": scalars,
        "b": scalars,
        "properties": st.one_of(
            st.fixed_dictionaries({}, optional={"x": scalars, "y": scalars}), scalars
        ),
        "context": st.fixed_dictionaries({}, optional={"ip": scalars}),
    },
)


def outcome(value: Callable[[Mapping[str, Any]], Any], scope: Mapping[str, Any]) -> Any:
    try:
        result = value(scope)
    except EvalError as exc:
        return ("error", str(exc))
    return ("value", type(result).__name__, result)


def _both(source: str) -> tuple[Any, Any]:
    report = Reporter("<test>", {})
    fast_expr = COMPILER.parse_expression(source, report, ())
    slow_expr = COMPILER.parse_expression(source, report, ())
    assert fast_expr is not None and slow_expr is not None, report.problems
    assert COMPILER.check(fast_expr, report, (), ROOTS), report.problems
    return COMPILER.compile_node(fast_expr), COMPILER.compile_jinja(slow_expr)


@settings(max_examples=600)
@given(st.tuples(expressions, operators, expressions), scopes)
def test_arithmetic_without_jinja_equals_jinja(
    parts: tuple[str, str, str], scope: dict[str, Any]
) -> None:
    source = " ".join(parts)
    report = Reporter("<test>", {})
    expr = COMPILER.parse_expression(source, report, ())
    assert expr is not None
    assert COMPILER._fast_arithmetic(expr) is not None  # the direct route is taken
    fast, slow = _both(source)
    assert outcome(fast, scope) == outcome(slow, scope)


@settings(max_examples=300)
@given(
    st.sampled_from(
        [
            "a is defined",
            "properties.x is defined",
            "properties.missing is defined",
            "(properties.x | number) is defined",
            "(a | lower) is defined",
            "(b | default(2)) is defined",
            "(b | boom) is defined",
            "(event | standard_event) is defined",
        ]
    ),
    scopes,
    st.sampled_from([None, "", "view_content", "checkout", "Purchase", "x"]),
)
def test_is_defined_without_jinja_equals_jinja(
    source: str, scope: dict[str, Any], event: str | None
) -> None:
    if event is not None:
        scope = {**scope, "event": event}
    report = Reporter("<test>", {})
    expr = COMPILER.parse_expression(source, report, ())
    assert expr is not None and COMPILER._fast_defined(expr) is not None
    fast, slow = _both(source)
    assert outcome(fast, scope) == outcome(slow, scope)


def test_a_missing_operand_ends_the_whole_expression_like_jinja() -> None:
    # Jinja stops at the first missing operand: a later filter error is never reached,
    # and `default` around arithmetic never sees it.
    fast, slow = _both("((properties.missing * 2) + (b | boom))")
    assert outcome(fast, {"b": 1}) == outcome(slow, {"b": 1}) == ("value", "_Absent", ABSENT)
    fast, slow = _both("((b | boom) + (properties.missing * 2))")
    assert outcome(fast, {"b": 1}) == outcome(slow, {"b": 1})
    assert outcome(fast, {"b": 1})[0] == "error"


def test_the_product_added_value_expression() -> None:
    fast, slow = _both("(properties.price | number) * (properties.quantity | number | default(1))")
    for scope in (
        {"properties": {"price": "12.50", "quantity": 2}},
        {"properties": {"price": 12.5}},
        {"properties": {"quantity": 2}},
        {"properties": {"price": "n/a", "quantity": 2}},
        {"properties": {"price": 3, "quantity": None}},
    ):
        assert outcome(fast, scope) == outcome(slow, scope)
    assert fast({"properties": {"price": "12.50", "quantity": 2}}) == 25.0


# --- generated readers -----------------------------------------------------------------

KEYS = ["context", "traits", "address", "city", "page", "url", "email", "products", "price"]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
documents = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)
paths = st.tuples(
    st.sampled_from(["context", "traits", "properties"]),
    st.lists(st.one_of(st.sampled_from(KEYS), st.integers(-2, 2)), max_size=3).map(tuple),
)


def walk(scope: Mapping[str, Any], root: str, keys: tuple[str | int, ...]) -> Any:
    value: Any = scope.get(root, ABSENT)
    for key in keys:
        if isinstance(key, str) and value.__class__ is dict:
            value = value.get(key, ABSENT)
        elif isinstance(key, int) and value.__class__ is list and -len(value) <= key < len(value):
            value = value[key]
        else:
            return ABSENT
    return value


@settings(max_examples=500)
@given(
    st.lists(paths, min_size=1, max_size=8),
    st.dictionaries(st.sampled_from(["context", "traits", "properties"]), documents),
)
def test_generated_readers_equal_a_plain_walk(
    fields: list[tuple[str, tuple[str | int, ...]]], scope: dict[str, Any]
) -> None:
    try:
        build = object_builder(
            [Field(f"f{i}", Leaf(path=path), None, None, f"f{i}") for i, path in enumerate(fields)]
        )
    except TypeError:  # prefixes mixing keys and indexes cannot be sorted; not a real spec
        return
    expected = {f"f{i}": walk(scope, *path) for i, path in enumerate(fields)}
    expected = {k: v for k, v in expected.items() if present(v)}
    warnings: list[str] = []
    assert build(scope, warnings) == (expected or ABSENT)
    assert warnings == []


# --- alternatives whose options may raise ----------------------------------------------


def _option(kind: str, index: int) -> Leaf:
    if kind == "path":
        return Leaf(path=("properties", (f"k{index}",)))
    if kind == "raises":

        def fail(scope: Mapping[str, Any]) -> Any:
            raise EvalError(f"option {index} failed")

        return Leaf(function=fail)
    return Leaf(function=lambda scope: scope["properties"].get(f"k{index}", ABSENT))


@settings(max_examples=400)
@given(
    st.lists(st.sampled_from(["path", "raises", "function"]), min_size=2, max_size=5),
    st.dictionaries(st.sampled_from([f"k{i}" for i in range(5)]), json_leaf),
)
def test_alternatives_keep_first_present_semantics(
    kinds: list[str], values: dict[str, Any]
) -> None:
    options = [_option(kind, index) for index, kind in enumerate(kinds)]
    leaf = Leaf(alternatives=tuple(options))
    scope = {"properties": values}
    # the reference semantics: the first present option; an option that raises is
    # skipped; when none is present, the first error is raised
    expected = outcome(lambda s: reference_value(leaf, s), scope)
    assert outcome(value_function(leaf), scope) == expected
    warnings: list[str] = []
    built = object_builder([Field("v", leaf, None, None, "rule r: v")])(scope, warnings)
    if expected[0] == "error":
        assert built is ABSENT
        assert warnings == [f"rule r: v: {expected[1]}; field dropped"]
    else:
        assert warnings == []
        assert built == ({"v": expected[2]} if present(expected[2]) else ABSENT)


# --- inline coercion shortcuts ---------------------------------------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.integers(4090, 4100).map(lambda n: "A" * n),  # a drawn 4 KB text overruns old hypothesis
    st.sampled_from(["USD", "usd", "Usd", "US", "USDT", "ÜSD", " USD", "EUR"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=800)
@given(values)
def test_inline_type_tests_only_skip_coercers_that_change_nothing(value: Any) -> None:
    for coercer, test in _UNCHANGED.items():
        if eval(test.format(v="value"), {"value": value}):
            assert coercer(value) == value
            assert type(coercer(value)) is type(value)


# --- filter shortcuts ------------------------------------------------------------------

urls = st.one_of(
    st.none(),
    st.integers(),
    st.text(alphabet="htps:/?&=#tclidx.E", max_size=30),
    st.sampled_from(
        [
            "https://shop.example/p?ttclid=E.C.P.1",
            "https://shop.example/p?a=1&ttclid=&ttclid=2#x",
            "https://shop.example/p#ttclid=3",
            "https://shop.example/ttclid",
            "",
        ]
    ),
)


@settings(max_examples=400)
@given(urls, st.sampled_from(["ttclid", "a"]))
def test_query_param_shortcut_equals_the_filter(url: Any, name: str) -> None:
    inner = Leaf(path=("context", ("url",)))
    leaf = Leaf(filtered=FilterStep(inner, f_query_param, (name,), False, True))
    scope = {"context": {"url": url}}
    expected = f_query_param(url, name) if present(url) else ABSENT
    expected = expected if present(expected) else ABSENT
    assert value_function(leaf)(scope) == expected


# --- compiled code shared between identical sources --------------------------------


def test_identical_generated_sources_compile_once() -> None:
    """Two rules generating the same source share one code object, each with its own
    namespace (objects passed by name stay per builder)."""
    first = object_builder([Field("v", Leaf(constant="one"), None, None, "v")])
    second = object_builder([Field("v", Leaf(constant="two"), None, None, "v")])
    assert first.__code__ is second.__code__
    assert first({}, []) == {"v": "one"}
    assert second({}, []) == {"v": "two"}


# --- objects built inline, generated fixed lists -------------------------------------

SPEC_KEYS = ["a", "b", "c"]
COERCERS = [None, to_string, to_number, to_integer]


def raising_builder(scope: Mapping[str, Any], warnings: list[str]) -> Any:
    raise EvalError("builder failed")


def noting_builder(scope: Mapping[str, Any], warnings: list[str]) -> Any:
    warnings.append("noted")
    return scope.get("properties", ABSENT)


def raising_leaf(scope: Mapping[str, Any]) -> Any:
    raise EvalError("leaf failed")


leaf_specs = st.one_of(
    st.tuples(st.sampled_from(["properties", "context"]), st.lists(
        st.one_of(st.sampled_from(SPEC_KEYS), st.integers(0, 1)), max_size=2
    ).map(tuple)).map(lambda path: Leaf(path=path)),
    json_leaf.map(lambda value: Leaf(constant=value)),
    st.just(Leaf(function=raising_leaf)),
)  # fmt: skip


def _nested_specs(inner: SearchStrategy[Any]) -> SearchStrategy[Any]:
    # a named function: hypothesis reads a multi-line lambda's source wrongly and warns
    return st.tuples(st.sampled_from(["object", "list"]), st.lists(inner, min_size=1, max_size=4))


field_specs = st.recursive(
    st.tuples(st.just("leaf"), leaf_specs, st.sampled_from(COERCERS))
    | st.sampled_from([("builder", raising_builder), ("builder", noting_builder)]),
    _nested_specs,
    max_leaves=12,
)


def make_field(key: str, spec: Any, inline: bool) -> Field:
    """A codegen field for ``spec``; nested objects inline, or behind a builder call."""
    kind = spec[0]
    label = f"rule r: {key}"
    if kind == "leaf":
        return Field(key, spec[1], None, spec[2], label)
    if kind == "builder":
        return Field(key, None, spec[1], None, label)
    children = [make_field(f"{key}.{i}", child, inline) for i, child in enumerate(spec[1])]
    if kind == "list":
        return Field(key, None, list_builder(children), None, label)
    return Field(key, None, object_builder(children), None, label, (*children,) if inline else None)


def reference_list(items: list[Field], scope: Mapping[str, Any], warnings: list[str]) -> Any:
    """The closure the generated fixed lists replace (builder.py before codegen)."""
    out = []
    for item in items:
        try:
            if item.leaf is not None:
                value = value_function(item.leaf)(scope)
            else:
                assert item.builder is not None
                value = item.builder(scope, warnings)
            if not present(value):
                continue
            if item.coerce is not None:
                value = item.coerce(value)
        except (EvalError, CoerceError) as exc:
            warnings.append(f"{item.label}: {exc}; item dropped")
            continue
        out.append(value)
    return out if out else ABSENT


def built(build: Callable[[Mapping[str, Any], list[str]], Any], scope: Any) -> tuple[Any, Any]:
    warnings: list[str] = []
    return build(scope, warnings), warnings


nested_scopes = st.fixed_dictionaries({}, optional={"properties": documents, "context": documents})


@settings(max_examples=500)
@given(st.lists(field_specs, min_size=1, max_size=5), nested_scopes)
def test_objects_built_inline_equal_builder_calls(specs: list[Any], scope: dict[str, Any]) -> None:
    inline = [make_field(f"f{i}", spec, True) for i, spec in enumerate(specs)]
    called = [make_field(f"f{i}", spec, False) for i, spec in enumerate(specs)]
    assert built(object_builder(inline), scope) == built(object_builder(called), scope)


@settings(max_examples=500)
@given(st.lists(field_specs, min_size=1, max_size=5), nested_scopes)
def test_generated_fixed_lists_equal_the_closure(specs: list[Any], scope: dict[str, Any]) -> None:
    items = [make_field(f"i{i}", spec, True) for i, spec in enumerate(specs)]
    called = [make_field(f"i{i}", spec, False) for i, spec in enumerate(specs)]
    expected = built(lambda s, w: reference_list(called, s, w), scope)
    assert built(list_builder(items), scope) == expected
    assert built(list_builder(called), scope) == expected


def test_a_dropped_list_item_is_reported_and_the_rest_kept() -> None:
    items = [
        Field("", Leaf(path=("properties", ("a",))), None, to_integer, "rule r: contents"),
        Field("", Leaf(constant=3), None, to_integer, "rule r: contents"),
    ]
    assert built(list_builder(items), {"properties": {"a": "x"}}) == (
        [3],
        ["rule r: contents: text that is not a plain decimal number; item dropped"],
    )


# --- generated code == a plain interpreter of the descriptions -------------------------


def reference_value(leaf: Leaf, scope: Mapping[str, Any]) -> Any:
    """What a leaf means, read without generated code (ABSENT when missing)."""
    if leaf.path is not None:
        return walk(scope, *leaf.path)
    if leaf.filtered is not None:
        step = leaf.filtered
        value = reference_value(step.inner, scope)
        if not step.absent_aware and not present(value):
            return ABSENT
        return step.function(value, *step.args)
    if leaf.function is not None:
        return leaf.function(scope)
    if leaf.alternatives:
        error: EvalError | None = None
        for option in leaf.alternatives:
            try:
                value = reference_value(option, scope)
            except EvalError as exc:
                error = error or exc
                continue
            if present(value):
                return value
        if error is not None:
            raise error
        return ABSENT
    return leaf.constant


def reference_object(fields: list[Field], scope: Mapping[str, Any], warnings: list[str]) -> Any:
    out: dict[str, Any] = {}
    for field in fields:
        assert field.leaf is not None
        try:
            value = reference_value(field.leaf, scope)
            if present(value):
                out[field.key] = field.coerce(value) if field.coerce is not None else value
        except (EvalError, CoerceError) as exc:
            warnings.append(f"{field.label}: {exc}; field dropped")
    return out if out else ABSENT


def failing_filter(value: Any) -> Any:
    raise EvalError("filter failed")


READ_KEYS = ["a", "b", "url", "traits", "page"]
read_paths = st.tuples(
    st.sampled_from(["properties", "context", "a"]),
    st.lists(st.one_of(st.sampled_from(READ_KEYS), st.integers(-1, 1)), max_size=3).map(tuple),
).map(lambda path: Leaf(path=path))
filters = st.sampled_from(
    [
        (f_query_param, ("ttclid",), False, True),
        (f_text, (), False, True),
        (f_lower, (), False, True),
        (f_default, ("fallback",), True, True),
        (failing_filter, (), False, False),
    ]
)
simple_leaves = st.one_of(
    read_paths,
    read_paths,
    st.tuples(read_paths, filters).map(
        lambda t: Leaf(filtered=FilterStep(t[0], t[1][0], t[1][1], t[1][2], t[1][3]))
    ),
    json_leaf.map(lambda value: Leaf(constant=value)),
    st.just(Leaf()),  # ABSENT
    st.just(Leaf(function=raising_leaf)),
)
read_leaves = st.one_of(
    simple_leaves,
    st.lists(simple_leaves, min_size=2, max_size=6).map(lambda xs: Leaf(alternatives=tuple(xs))),
)


def _nested_values(inner: SearchStrategy[Any]) -> SearchStrategy[Any]:
    lists = st.lists(inner, max_size=3)
    return st.one_of(lists, st.dictionaries(st.sampled_from(READ_KEYS), inner, max_size=4))


read_values = st.recursive(
    st.one_of(
        json_leaf,
        st.sampled_from(
            [
                "https://x.example/?ttclid=E.1",
                "?ttclid=",
                "ttclid",
                "ABC",
                "",
                [],
                "2025-01-01T00:00:00.000Z",
                "2025-02-30T00:00:00Z",
                "2025-01-01T10:00:00+02:00",
                1735689600,
                -5,
            ]
        ),
    ),
    _nested_values,
    max_leaves=16,
)
read_scopes = st.dictionaries(st.sampled_from(["properties", "context", "a"]), read_values)


READ_COERCERS = [*COERCERS, to_unix_seconds, to_currency]


def ordered(value: Any) -> Any:
    """``value`` with every object as its list of items (key order counts)."""
    if isinstance(value, dict):
        return [(k, ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [ordered(v) for v in value]
    return (type(value).__name__, value)


@settings(max_examples=800)
@given(
    st.lists(st.tuples(read_leaves, st.sampled_from(READ_COERCERS)), min_size=1, max_size=8),
    read_scopes,
    st.booleans(),
)
def test_generated_objects_equal_a_plain_interpreter(
    specs: list[tuple[Leaf, Any]], scope: dict[str, Any], proxy: bool
) -> None:
    fields = [Field(f"f{i}", leaf, None, co, f"rule r: f{i}") for i, (leaf, co) in enumerate(specs)]
    try:
        build = object_builder(fields)
    except TypeError:  # prefixes mixing keys and indexes cannot be sorted; not a real spec
        return
    given_scope: Mapping[str, Any] = MappingProxyType(scope) if proxy else scope
    expected_warnings: list[str] = []
    expected = reference_object(fields, scope, expected_warnings)
    warnings: list[str] = []
    assert ordered(build(given_scope, warnings)) == ordered(expected)
    assert warnings == expected_warnings
    for leaf, _ in specs:
        assert outcome(value_function(leaf), given_scope) == outcome(
            lambda s, leaf=leaf: v if present(v := reference_value(leaf, s)) else ABSENT, scope
        )
    items = [Field("", leaf, None, co, "rule r: list") for leaf, co in specs]
    expected_items: list[Any] = []
    expected_warnings = []
    for item in items:
        assert item.leaf is not None
        try:
            value = reference_value(item.leaf, scope)
            if present(value):
                expected_items.append(item.coerce(value) if item.coerce is not None else value)
        except (EvalError, CoerceError) as exc:
            expected_warnings.append(f"rule r: list: {exc}; item dropped")
    listed, warnings = built(list_builder(items), given_scope)
    assert ordered(listed) == ordered(expected_items or ABSENT)
    assert warnings == expected_warnings


timestamps = st.one_of(
    st.sampled_from(
        [
            "2025-01-01T00:00:00.000Z",
            "2025-01-01T00:00:00Z",
            "1970-01-01T00:00:00.5Z",
            "2025-02-30T00:00:00Z",
            "2025-01-01T10:00:00+02:00",
            "2025-01-01",
            "",
            "now",
        ]
    ),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.integers(-10, 2_000_000_000_000),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
)


@settings(max_examples=500)
@given(timestamps)
def test_generated_time_reads_equal_the_coercer(value: Any) -> None:
    build = object_builder(
        [Field("event_time", Leaf(path=("timestamp", ())), None, to_unix_seconds, "rule r: t")]
    )
    expected: Any
    try:
        expected = {"event_time": to_unix_seconds(value)} if present(value) else ABSENT
        expected_warnings = []
    except CoerceError as exc:
        expected, expected_warnings = ABSENT, [f"rule r: t: {exc}; field dropped"]
    assert built(build, {"timestamp": value}) == (expected, expected_warnings)

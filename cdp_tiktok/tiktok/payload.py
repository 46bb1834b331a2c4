"""TikTok's wire format: build, encode and validate ``/event/track/`` requests.

``request.schema.json`` (JSON Schema 2020-12) is the single statement of the request
shape. It is compiled once, at first use, into plain Python checks (a closure per schema
node) because a general JSON Schema validator is far too slow for 1,000-event batches at
tens of thousands of events per second; the tests check the compiled validator against
``jsonschema`` on generated payloads. Problems are reported with TikTok-style paths
(``Batch.3.properties.contents.0.content_id``) and marshmallow-style messages, as
TikTok's own answers are.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from cdp_tiktok.events import BatchKey
from cdp_tiktok.settings import EVENT_SOURCES
from cdp_tiktok.tiktok.catalog import load_catalog

ENDPOINT_PATH = "/open_api/v1.3/event/track/"
MAX_EVENTS = 1000
SCHEMA_RESOURCE = "request.schema.json"


@dataclass(frozen=True, slots=True)
class PayloadProblem:
    """One reason a request (or one ``data[]`` item) does not match TikTok's format.

    ``path`` names the field TikTok-style (``Batch.N.…`` inside ``data[]``, the key name
    at the top level); ``index`` is the ``data[]`` row, or ``None`` for the envelope.
    ``message`` never contains the offending value.
    """

    path: str
    message: str
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


# ---------------------------------------------------------------------------- encoding

_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


def build_request(
    key: BatchKey, events: Sequence[Mapping[str, Any]], partner_name: str | None = None
) -> dict[str, Any]:
    """The request body for ``events`` (``data[]`` items) sharing ``key``.

    ``test_event_code`` and ``partner_name`` go at the top level, only when set. The
    items are used as they are (not copied, not validated). Raises ``ValueError``
    unless there are 1 to 1,000 events.
    """
    if not 1 <= len(events) <= MAX_EVENTS:
        raise ValueError(f"a request holds 1 to {MAX_EVENTS} events, not {len(events)}")
    body: dict[str, Any] = {
        "event_source": key.event_source,
        "event_source_id": key.event_source_id,
    }
    if partner_name:
        body["partner_name"] = partner_name
    if key.test_event_code:
        body["test_event_code"] = key.test_event_code
    body["data"] = list(events)
    return body


def encode_request(request: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON for a request body (no spaces, non-ASCII kept as UTF-8).

    Raises ``ValueError`` for NaN or infinite numbers, which are not JSON.
    """
    return _dumps(request).encode("utf-8")


def encode_event(item: Mapping[str, Any]) -> bytes:
    """One ``data[]`` item encoded exactly as :func:`encode_request` would embed it.

    Lets a batcher measure events once and assemble requests with :func:`encode_batch`.
    """
    return _dumps(item).encode("utf-8")


def _envelope_parts(key: BatchKey, partner_name: str | None) -> tuple[bytes, bytes]:
    head = build_request(key, [{}], partner_name)
    encoded = encode_request(head)
    cut = encoded.rindex(b"{}")
    return encoded[:cut], encoded[cut + 2 :]


def envelope_overhead(key: BatchKey, partner_name: str | None = None) -> int:
    """Bytes a request for ``key`` takes besides its events and the commas between them."""
    head, tail = _envelope_parts(key, partner_name)
    return len(head) + len(tail)


def encode_batch(
    key: BatchKey, encoded_events: Sequence[bytes], partner_name: str | None = None
) -> bytes:
    """The same bytes as ``encode_request(build_request(key, events, partner_name))``,
    from events already encoded with :func:`encode_event`.

    Its length is ``envelope_overhead(key, partner_name) + sum(sizes) + len(events) - 1``.
    """
    if not 1 <= len(encoded_events) <= MAX_EVENTS:
        raise ValueError(f"a request holds 1 to {MAX_EVENTS} events, not {len(encoded_events)}")
    head, tail = _envelope_parts(key, partner_name)
    return head + b",".join(encoded_events) + tail


# ---------------------------------------------------------------- schema compilation

Path = tuple[str | int, ...]
Out = list[tuple[Path, str]]
Check = Callable[[Any, Path, Out], None]
Predicate = Callable[[Any], bool]

_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: (type(v) is int) or (type(v) is float and math.isfinite(v)),
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "null": lambda v: v is None,
}
_TYPE_MESSAGES = {
    "string": "Not a valid string.",
    "integer": "Not a valid integer.",
    "number": "Not a valid number.",
    "boolean": "Not a valid boolean.",
    "object": "Not a valid mapping type.",
    "array": "Not a valid list.",
    "null": "Field may not be set.",
}
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
)
_SUPPORTED = frozenset(
    {
        "$ref", "allOf", "if", "then", "else", "not", "const", "enum", "type", "minLength",
        "maxLength", "pattern", "minimum", "maximum", "minItems", "maxItems", "items",
        "properties", "required", "additionalProperties", "errorMessage",
    }
)  # fmt: skip


class SchemaCompileError(ValueError):
    """The schema uses a keyword the compiler does not implement."""


def _ecma_search(pattern: str) -> Callable[[str], object]:
    """``search`` with ECMA-262 anchors: a final ``$`` must not match before a newline."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern).search


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class _Compiler:
    """Turns the supported JSON Schema subset into nested closures, once per node."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}
        self.fast_refs: dict[str, Predicate] = {}

    def ref(self, pointer: str) -> Check:
        found = self.refs.get(pointer)
        if found is not None:
            return found
        slot: list[Check] = []

        def deferred(value: Any, path: Path, out: Out) -> None:
            slot[0](value, path, out)

        self.refs[pointer] = deferred  # breaks reference cycles while compiling
        node: Any = self.root
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part]
        compiled = self.compile(node)
        slot.append(compiled)
        self.refs[pointer] = compiled
        return compiled

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return _accept
        if schema is False:
            return _reject("Unknown field.")
        unknown = set(schema) - _SUPPORTED - _ANNOTATIONS
        if unknown:
            raise SchemaCompileError(f"unsupported schema keywords: {sorted(unknown)}")
        custom: str | None = schema.get("errorMessage")
        own: list[Callable[[Any], str | None]] = []  # node-level tests -> failure message
        children: list[Check] = []

        if "$ref" in schema:
            children.append(self.ref(schema["$ref"]))
        for sub in schema.get("allOf", ()):
            children.append(self.compile(sub))
        if "if" in schema:
            children.append(
                _conditional(
                    self.compile(schema["if"]),
                    self.compile(schema.get("then", True)),
                    self.compile(schema.get("else", True)),
                )
            )
        if "not" in schema:
            negated = self.compile(schema["not"])
            own.append(lambda v: "Not allowed." if _passes(negated, v) else None)
        if "const" in schema:
            expected = schema["const"]
            own.append(lambda v: None if _same(v, expected) else f"Must be equal to {expected}.")
        if "enum" in schema:
            options = list(schema["enum"])
            text = f"Must be one of: {', '.join(map(str, options))}."
            if all(type(o) is str for o in options):
                members = frozenset(options)
                own.append(lambda v: None if type(v) is str and v in members else text)
            else:
                own.append(lambda v: None if any(_same(v, o) for o in options) else text)
        type_test: Callable[[Any], bool] | None = None
        type_message = ""
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            tests = [_TYPE_TESTS[n] for n in names]
            type_test = tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))
            type_message = _TYPE_MESSAGES[names[0]]
        own.extend(self._string_tests(schema))
        own.extend(self._number_tests(schema))
        own.extend(self._array_tests(schema))
        items = self.compile(schema["items"]) if "items" in schema else None
        obj = self._object_check(schema)
        return _node(type_test, type_message, own, custom, items, obj, children)

    @staticmethod
    def _string_tests(schema: Mapping[str, Any]) -> list[Callable[[Any], str | None]]:
        tests: list[Callable[[Any], str | None]] = []
        low, high = schema.get("minLength"), schema.get("maxLength")
        if low is not None:
            text = "Must not be empty." if low == 1 else f"Shorter than minimum length {low}."
            tests.append(lambda v: text if type(v) is str and len(v) < low else None)
        if high is not None:
            tests.append(
                lambda v: (
                    f"Longer than maximum length {high}."
                    if type(v) is str and len(v) > high
                    else None
                )
            )
        if "pattern" in schema:
            search = _ecma_search(schema["pattern"])
            tests.append(
                lambda v: (
                    "String does not match expected pattern."
                    if type(v) is str and search(v) is None
                    else None
                )
            )
        return tests

    @staticmethod
    def _number_tests(schema: Mapping[str, Any]) -> list[Callable[[Any], str | None]]:
        tests: list[Callable[[Any], str | None]] = []
        low, high = schema.get("minimum"), schema.get("maximum")

        def numeric(v: Any) -> bool:
            return type(v) is int or type(v) is float

        if low is not None:
            tests.append(
                lambda v: (
                    f"Must be greater than or equal to {low}." if numeric(v) and v < low else None
                )
            )
        if high is not None:
            tests.append(
                lambda v: (
                    f"Must be less than or equal to {high}." if numeric(v) and v > high else None
                )
            )
        return tests

    @staticmethod
    def _array_tests(schema: Mapping[str, Any]) -> list[Callable[[Any], str | None]]:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is None and high is None:
            return []
        lo = 0 if low is None else low
        hi = math.inf if high is None else high
        if high is None:
            text = "Must not be empty." if lo == 1 else f"Must have at least {lo} items."
        else:
            text = f"Length must be between {lo} and {high}."
        return [lambda v: text if type(v) is list and not lo <= len(v) <= hi else None]

    def _object_check(self, schema: Mapping[str, Any]) -> Check | None:
        if not {"properties", "required", "additionalProperties"} & set(schema):
            return None
        props = {name: self.compile(sub) for name, sub in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        extra = schema.get("additionalProperties", True)
        extra_check = None if extra is True else self.compile(extra)

        def check_object(value: Any, path: Path, out: Out) -> None:
            if type(value) is not dict:
                return
            for name in required:
                if name not in value:
                    out.append(((*path, name), "Missing data for required field."))
            for name, item in value.items():
                check = props.get(name)
                if check is not None:
                    check(item, (*path, name), out)
                elif extra_check is not None:
                    extra_check(item, (*path, name), out)

        return check_object

    # -- fast predicates: no paths, no messages; the detailed checks run only on failure

    def fast_ref(self, pointer: str) -> Predicate:
        found = self.fast_refs.get(pointer)
        if found is not None:
            return found
        slot: list[Predicate] = []
        self.fast_refs[pointer] = lambda v: slot[0](v)
        node: Any = self.root
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part]
        compiled = self.fast(node)
        slot.append(compiled)
        self.fast_refs[pointer] = compiled
        return compiled

    def fast(self, schema: Any) -> Predicate:
        """A predicate equivalent to :meth:`compile` finding no problem."""
        if schema is True or schema == {}:
            return _true
        if schema is False:
            return _false
        parts: list[Predicate] = []
        kind = schema.get("type")
        if kind == "string":
            parts.append(_fast_string(schema))
        elif kind in ("integer", "number"):
            parts.append(_fast_number(schema, kind))
        elif kind == "array":
            items = self.fast(schema.get("items", True))
            parts.append(_fast_array(schema, items))
        elif kind == "object" or (kind is None and "properties" in schema):
            parts.append(self._fast_object(schema, typed=kind == "object"))
        elif kind is not None:
            test = _TYPE_TESTS[kind] if isinstance(kind, str) else self._any_type(kind)
            parts.append(test)
        if kind is None:
            parts.extend(self._fast_untyped(schema))
        if "enum" in schema or "const" in schema:
            options = list(schema["enum"]) if "enum" in schema else [schema["const"]]
            if all(type(o) is str for o in options):
                members = frozenset(options)
                parts.append(lambda v: type(v) is str and v in members)
            else:
                parts.append(lambda v: any(_same(v, o) for o in options))
        if "not" in schema:
            negated = self.fast(schema["not"])
            parts.append(lambda v: not negated(v))
        if "$ref" in schema:
            parts.append(self.fast_ref(schema["$ref"]))
        parts.extend(self.fast(sub) for sub in schema.get("allOf", ()))
        if "if" in schema:
            test = self.fast(schema["if"])
            then = self.fast(schema.get("then", True))
            otherwise = self.fast(schema.get("else", True))
            parts.append(lambda v: then(v) if test(v) else otherwise(v))
        return _all(parts)

    def _fast_untyped(self, schema: Mapping[str, Any]) -> list[Predicate]:
        """Keywords that constrain only values of their own type when ``type`` is absent."""
        parts: list[Predicate] = []
        keys = set(schema)
        if keys & {"minLength", "maxLength", "pattern"}:
            text = _fast_string(schema)
            parts.append(lambda v: type(v) is not str or text(v))
        if keys & {"minimum", "maximum"}:
            number = _fast_number(schema, "number")
            parts.append(lambda v: not (type(v) is int or type(v) is float) or number(v))
        if keys & {"items", "minItems", "maxItems"}:
            array = _fast_array(schema, self.fast(schema.get("items", True)))
            parts.append(lambda v: type(v) is not list or array(v))
        if "required" in keys and "properties" not in keys:
            parts.append(self._fast_object(schema, typed=False))
        return parts

    @staticmethod
    def _any_type(kinds: Sequence[str]) -> Predicate:
        tests = [_TYPE_TESTS[k] for k in kinds]
        return lambda v: any(t(v) for t in tests)

    def _fast_object(self, schema: Mapping[str, Any], *, typed: bool) -> Predicate:
        props = {name: self.fast(sub) for name, sub in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        extra_schema = schema.get("additionalProperties", True)
        extra = None if extra_schema is True else self.fast(extra_schema)
        get = props.get

        def check(v: Any) -> bool:
            if type(v) is not dict:
                return not typed
            for name in required:
                if name not in v:
                    return False
            for name, item in v.items():
                test = get(name, extra)
                if test is not None and not test(item):
                    return False
            return True

        return check


def _true(value: Any) -> bool:
    return True


def _false(value: Any) -> bool:
    return False


def _all(parts: list[Predicate]) -> Predicate:
    if not parts:
        return _true
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda v: first(v) and second(v)
    every = tuple(parts)

    def check(value: Any) -> bool:
        return all(part(value) for part in every)

    return check


def _fast_string(schema: Mapping[str, Any]) -> Predicate:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    search = _ecma_search(schema["pattern"]) if "pattern" in schema else None
    if high is None and search is None:
        if low == 0:
            return lambda v: type(v) is str
        if low == 1:
            return lambda v: type(v) is str and v != ""
    top = math.inf if high is None else high

    def check(v: Any) -> bool:
        return type(v) is str and low <= len(v) <= top and (search is None or search(v) is not None)

    return check


def _fast_number(schema: Mapping[str, Any], kind: str) -> Predicate:
    low = schema.get("minimum", -math.inf)
    high = schema.get("maximum", math.inf)
    if kind == "integer":
        return lambda v: type(v) is int and low <= v <= high
    return lambda v: (
        (type(v) is int or (type(v) is float and math.isfinite(v))) and low <= v <= high
    )


def _fast_array(schema: Mapping[str, Any], items: Predicate) -> Predicate:
    low = schema.get("minItems", 0)
    high = schema.get("maxItems", math.inf)
    if items is _true:
        return lambda v: type(v) is list and low <= len(v) <= high
    return lambda v: type(v) is list and low <= len(v) <= high and all(map(items, v))


def _accept(value: Any, path: Path, out: Out) -> None:
    return None


def _reject(message: str) -> Check:
    def check(value: Any, path: Path, out: Out) -> None:
        out.append((path, message))

    return check


def _passes(check: Check, value: Any) -> bool:
    scratch: Out = []
    check(value, (), scratch)
    return not scratch


def _conditional(test: Check, then: Check, otherwise: Check) -> Check:
    def check(value: Any, path: Path, out: Out) -> None:
        (then if _passes(test, value) else otherwise)(value, path, out)

    return check


def _node(
    type_test: Callable[[Any], bool] | None,
    type_message: str,
    own: list[Callable[[Any], str | None]],
    custom: str | None,
    items: Check | None,
    obj: Check | None,
    children: list[Check],
) -> Check:
    """Combine one schema node's checks; a wrong type stops the node (no cascades)."""
    own_tests = tuple(own)
    kids = tuple(children)

    def check(value: Any, path: Path, out: Out) -> None:
        if type_test is not None and not type_test(value):
            out.append((path, custom or type_message))
            return
        for test in own_tests:
            message = test(value)
            if message is not None:
                out.append((path, custom or message))
                break
        if items is not None and type(value) is list:
            for position, item in enumerate(value):
                items(item, (*path, position), out)
        if obj is not None:
            obj(value, path, out)
        for kid in kids:
            kid(value, path, out)

    return check


# ------------------------------------------------------------------------- validation


@cache
def request_schema() -> dict[str, Any]:
    """The packaged request JSON Schema (``request.schema.json``), parsed once."""
    text = resources.files("cdp_tiktok.tiktok").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class _Validators:
    request: Check
    events: Mapping[str, Check]
    request_ok: Predicate
    event_ok: Mapping[str, Predicate]
    page_url: Check
    page_url_ok: Predicate


@cache
def _validators() -> _Validators:
    compiler = _Compiler(request_schema())
    request = compiler.compile(request_schema())
    base = compiler.ref("#/$defs/event")
    base_ok = compiler.fast_ref("#/$defs/event")
    events: dict[str, Check] = {}
    event_ok: dict[str, Predicate] = {}
    for source in EVENT_SOURCES:
        events[source] = _both(base, compiler.ref(f"#/$defs/source_{source}"))
        event_ok[source] = _all([base_ok, compiler.fast_ref(f"#/$defs/source_{source}")])
    return _Validators(
        request,
        events,
        compiler.fast(request_schema()),
        event_ok,
        compiler.ref("#/$defs/page_url_required"),
        compiler.fast_ref("#/$defs/page_url_required"),
    )


def _both(first: Check, second: Check) -> Check:
    def check(value: Any, path: Path, out: Out) -> None:
        first(value, path, out)
        second(value, path, out)

    return check


def _problem(path: Path, message: str) -> PayloadProblem:
    if len(path) >= 2 and path[0] == "data" and type(path[1]) is int:
        return PayloadProblem("Batch." + ".".join(map(str, path[1:])), message, path[1])
    return PayloadProblem(".".join(map(str, path)) or "request", message, None)


def _name_problems(body: Mapping[str, Any], out: Out) -> None:
    source = body.get("event_source")
    data = body.get("data")
    if source not in EVENT_SOURCES or type(data) is not list:
        return
    catalog = load_catalog()
    for position, item in enumerate(data):
        name = item.get("event") if type(item) is dict else None
        if type(name) is not str or not name:
            continue  # the schema already reports it
        verdict = catalog.check(name, source, custom=True)
        if not verdict.ok:
            out.append((("data", position, "event"), verdict.error or "Not a valid event."))


def _page_url_problems(body: Mapping[str, Any], out: Out) -> None:
    data = body.get("data")
    if body.get("event_source") != "web" or type(data) is not list:
        return
    validators = _validators()
    for position, item in enumerate(data):
        if type(item) is dict and not validators.page_url_ok(item):
            validators.page_url(item, ("data", position), out)


def validate_request(
    body: Any, *, names: bool = False, require_page_url: bool = False
) -> list[PayloadProblem]:
    """Every way ``body`` (a parsed request) departs from ``request.schema.json``.

    An empty list means valid. Problems are ordered by ``data[]`` row (envelope
    problems first). With ``names=True`` each event name is also checked against the
    catalog for the request's ``event_source`` (custom names allowed where the source
    allows them), as the sandbox does. ``page`` is optional on web events (server-side
    events have none); ``require_page_url=True`` makes ``page.url`` required on them.
    """
    validators = _validators()
    out: Out = []
    if not validators.request_ok(body):
        validators.request(body, (), out)
    if names and type(body) is dict:
        _name_problems(body, out)
    if require_page_url and type(body) is dict:
        _page_url_problems(body, out)
    problems = [_problem(path, message) for path, message in out]
    problems.sort(key=lambda p: -1 if p.index is None else p.index)
    return problems


def validate_event(
    item: Any, event_source: str, *, index: int | None = None, require_page_url: bool = False
) -> list[PayloadProblem]:
    """Every way one ``data[]`` item departs from the schema for ``event_source``.

    Paths are relative to the item (``properties.value``), or ``Batch.<index>.…`` with
    ``index`` set. Event names are not checked here (see ``Catalog.check``).
    ``require_page_url`` as in :func:`validate_request`. Raises ``ValueError`` for an
    unknown ``event_source``.
    """
    validators = _validators()
    check = validators.events.get(event_source)
    if check is None:
        raise ValueError(f"unknown event_source {event_source!r}")
    if require_page_url and event_source == "web":
        check = _both(check, validators.page_url)
        if validators.event_ok[event_source](item) and validators.page_url_ok(item):
            return []
    elif validators.event_ok[event_source](item):
        return []
    out: Out = []
    if index is not None:
        check(item, ("data", index), out)
        return [_problem(path, message) for path, message in out]
    check(item, (), out)
    return [PayloadProblem(".".join(map(str, path)), message) for path, message in out]

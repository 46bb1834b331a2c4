"""Straight-line Python for the hot part of mapping: reading paths and building objects.

The builder describes an object as fields whose values are plain paths, constants,
alternatives of those, or opaque compiled values; this module turns that description
into one Python function per object, so mapping a message costs a few dictionary reads
per field instead of a chain of closure calls. Only ``repr()`` of validated keys
(strings and integers) is ever written into the generated source; every other object
(constants, filters, coercers, labels) is passed by name through the function's
namespace. The generated source never contains event data: it is built once, at load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cdp_tiktok.mapping.coerce import (
    MAX_EVENT_ID,
    MAX_STRING,
    CoerceError,
    json_value,
    to_currency,
    to_event_id,
    to_integer,
    to_number,
    to_string,
    to_unix_seconds,
)
from cdp_tiktok.mapping.compiler import EvalError
from cdp_tiktok.mapping.filters import ABSENT, f_query_param, present
from cdp_tiktok.messages import iso_utc_seconds

PathSpec = tuple[str, tuple[str | int, ...]]

# A value is present unless None/ABSENT or an empty text/list/object; 0 and false count.
# ABSENT is tested before truth: its __bool__ is a Python call.
_PRESENT = (
    "({v} is not None and {v} is not ABSENT and ({v} or ({v}.__class__ is not str "
    "and {v}.__class__ is not list and {v}.__class__ is not dict)))"
)
# The same test of a value read from a message's object, assigned to ``{v}`` on the way
# (such a value is almost never ABSENT, so it is tested last).
_PRESENT_READ = (
    "(({v} := {src}) is not None and ({v} or ({v}.__class__ is not str and {v}.__class__ "
    "is not list and {v}.__class__ is not dict and {v} is not ABSENT)))"
)
# The same test of a value computed (by a filter), assigned to ``{v}`` on the way.
_PRESENT_AS = (
    "(({v} := {src}) is not None and {v} is not ABSENT and ({v} or ({v}.__class__ is not "
    "str and {v}.__class__ is not list and {v}.__class__ is not dict)))"
)

# Values a coercer returns unchanged (the same object), tested inline so the common case
# costs no call; any other value goes to the coercer, which decides.
_UNCHANGED: dict[Callable[[Any], Any], str] = {
    to_string: f"({{v}}.__class__ is str and len({{v}}) <= {MAX_STRING})",
    to_event_id: f"({{v}}.__class__ is str and len({{v}}) <= {MAX_EVENT_ID})",
    # x - x == 0.0 holds for every finite float and for no infinity or NaN
    to_number: "({v}.__class__ is int or ({v}.__class__ is float and {v} - {v} == 0.0))",
    to_integer: "{v}.__class__ is int",
    to_currency: (
        "({v}.__class__ is str and len({v}) == 3 and {v}.isascii() and {v}.isalpha() "
        "and {v}.isupper())"
    ),
    json_value: (
        f"(({{v}}.__class__ is str and len({{v}}) <= {MAX_STRING}) or {{v}}.__class__ is int "
        "or {v}.__class__ is bool or ({v}.__class__ is float and {v} - {v} == 0.0))"
    ),
}


@dataclass(frozen=True)
class Leaf:
    """What codegen knows about a compiled value: a path, a constant, alternatives of
    leaves, or an opaque function (which may raise ``EvalError``)."""

    path: PathSpec | None = None
    constant: Any = ABSENT
    alternatives: tuple[Leaf, ...] = ()
    function: Callable[[Mapping[str, Any]], Any] | None = None
    filtered: FilterStep | None = None

    @property
    def is_pure(self) -> bool:
        """True when evaluating it cannot raise (paths, constants, built-in filters)."""
        if self.function is not None:
            return False
        if self.filtered is not None:
            return self.filtered.pure and self.filtered.inner.is_pure
        return all(a.is_pure for a in self.alternatives)


@dataclass(frozen=True)
class FilterStep:
    """``inner | function(*args)``; ``absent_aware`` filters also see missing values;
    ``pure`` filters never raise."""

    inner: Leaf
    function: Callable[..., Any]
    args: tuple[Any, ...]
    absent_aware: bool
    pure: bool


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.prefixes: dict[tuple[str | int, ...], str] = {}
        self.objects: set[tuple[str | int, ...]] = set()
        self.namespace: dict[str, Any] = {
            "EMPTY": {},  # only ever read
            "ABSENT": ABSENT,
            "EvalError": EvalError,
            "CoerceError": CoerceError,
            "ISO_SECONDS": iso_utc_seconds,
        }
        self._count = 0

    def name(self, value: Any, prefix: str = "n") -> str:
        self._count += 1
        name = f"{prefix}{self._count}"
        self.namespace[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def hoist(self, leaves: list[Leaf]) -> None:
        """Read every path prefix shared by two or more paths once, into a local,
        at the top of the function (reads are pure, so order does not matter).

        A prefix only ever followed by object keys is stored as the object itself or
        an empty one, so each read below it is a single ``.get``."""
        counts: dict[tuple[str | int, ...], int] = {}
        indexed: set[tuple[str | int, ...]] = set()
        stack = list(leaves)
        while stack:
            leaf = stack.pop()
            stack.extend(leaf.alternatives)
            if leaf.filtered is not None:
                stack.append(leaf.filtered.inner)
            if leaf.path is not None:
                full = (leaf.path[0], *leaf.path[1])
                for end in range(1, len(full)):
                    counts[full[:end]] = counts.get(full[:end], 0) + 1
                    if not isinstance(full[end], str):
                        indexed.add(full[:end])
        # The scope is read as a dict: a Mapping of another class is copied once (reads
        # of a Mapping and of its copy agree).
        self.emit(1, "if scope.__class__ is not dict:")
        self.emit(2, "scope = dict(scope)")
        self.prefixes[()] = "scope"
        self.objects.add(())
        for prefix in sorted(p for p, n in counts.items() if n > 1):
            var = f"p{len(self.prefixes) - 1}"
            parent = self.prefixes.get(prefix[:-1])
            if parent is not None and prefix[:-1] in self.objects and prefix not in indexed:
                # an object inside an object (maybe empty): no call when the key is absent
                key = prefix[-1]
                self.emit(1, f"if {key!r} in {parent}:")
                self.emit(2, f"{var} = {parent}[{key!r}]")
                self.emit(2, f"if {var}.__class__ is not dict:")
                self.emit(3, f"{var} = EMPTY")
                self.emit(1, "else:")
                self.emit(2, f"{var} = EMPTY")
                self.objects.add(prefix)
            else:
                self._walk(prefix, var, 1)
                if prefix not in indexed:
                    self.emit(1, f"{var} = {var} if {var}.__class__ is dict else EMPTY")
                    self.objects.add(prefix)
            self.prefixes[prefix] = var

    def _walk(self, full: tuple[str | int, ...], var: str, indent: int) -> None:
        start = 1
        for end in range(len(full) - 1, 0, -1):
            known = self.prefixes.get(full[:end])
            if known is not None:
                if full[:end] in self.objects:  # an object (maybe empty): one read
                    # an empty object (often: traits, address) costs no call
                    self.emit(indent, f"{var} = {known}.get({full[end]!r}) if {known} else None")
                    start = end + 1
                else:
                    self.emit(indent, f"{var} = {known}")
                    start = end
                break
        else:
            self.emit(indent, f"{var} = scope.get({full[0]!r})")
        for key in full[start:]:
            if isinstance(key, str):
                self.emit(
                    indent, f"{var} = {var}.get({key!r}) if {var}.__class__ is dict else None"
                )
            else:
                self.emit(
                    indent,
                    f"{var} = {var}[{key!r}] if {var}.__class__ is list and "
                    f"{-key if key < 0 else key + 1} <= len({var}) else None",
                )

    def sources(self, leaf: Leaf) -> list[str] | None:
        """The hoisted objects (locals, each a dict or an empty one) that every
        alternative of ``leaf`` reads from, in order; ``None`` unless ``leaf`` is two or
        more plain paths each read through such an object. When all of them are empty,
        every alternative reads nothing, so the whole field can be skipped."""
        if len(leaf.alternatives) < 2:
            return None
        found: list[str] = []
        for option in leaf.alternatives:
            if option.path is None:
                return None
            full = (option.path[0], *option.path[1])
            for end in range(len(full) - 1, 0, -1):
                known = self.prefixes.get(full[:end])
                if known is not None:
                    if full[:end] not in self.objects:
                        return None
                    if known not in found:
                        found.append(known)
                    break
            else:
                return None
        return found

    def direct(self, leaf: Leaf) -> tuple[str, str] | None:
        """``(object local, key)`` when ``leaf`` is a plain path ending in a key of a
        hoisted object (a dict or an empty one), so that ``key in object`` tells
        whether it is there; ``None`` otherwise."""
        if leaf.path is None:
            return None
        full = (leaf.path[0], *leaf.path[1])
        key = full[-1]
        if not isinstance(key, str) or full[:-1] not in self.objects:
            return None
        return self.prefixes[full[:-1]], key

    def choose(self, leaf: Leaf, indent: int, store: str) -> None:
        """Emit code that sets ``v`` to the first present value of ``leaf`` (its
        alternatives, or itself) and then runs the line ``store``; nothing
        runs when no value is present. Same values, in the same order, as :meth:`read`
        followed by a presence test (``leaf`` must be :func:`_straight`): a key read
        from a hoisted object is tested with ``in`` first, which costs no call when it
        is absent (the usual case for most alternatives)."""
        options = leaf.alternatives or (leaf,)
        opened = False  # an if/elif chain is open at `indent`
        for option in options:
            found = self.direct(option)
            if _is_constant(option):
                if not present(option.constant):
                    continue  # never present: nothing to test
                if opened:
                    self.emit(indent, "else:")
                    indent += 1
                self.emit(indent, f"v = {self.name(option.constant, 'c')}")
                self.emit(indent, store)
                return  # always present: no later option is ever read
            step = option.filtered
            if step is not None and not step.absent_aware:
                found = self.direct(step.inner)
            if found is not None:
                obj, key = found
                test = f"{key!r} in {obj} and " + _PRESENT_READ.format(v="v", src=f"{obj}[{key!r}]")
                if step is not None and option.path is None:
                    # a filter that only sees present values, on a key of an object
                    args = self.name(step.args, "a")
                    call = f"{self.name(step.function, 'f')}(v, *{args})"
                    if _query_shortcut(step):
                        test += f" and (v.__class__ is not str or {args}[0] in v)"
                    test += " and " + _PRESENT_AS.format(v="v", src=call)
                self.emit(indent, f"{'elif' if opened else 'if'} {test}:")
            else:
                if opened:
                    self.emit(indent, "else:")
                    indent += 1
                self.read(option, "v", indent)
                self.emit(indent, f"if {_PRESENT.format(v='v')}:")
            self.emit(indent + 1, store)
            opened = True
        if not opened:
            self.emit(indent, "pass")  # no option can ever be present

    def read(self, leaf: Leaf, var: str, indent: int) -> None:
        """Emit code that sets ``var`` to the leaf's value (None/ABSENT when missing)."""
        if leaf.path is not None:
            self._walk((leaf.path[0], *leaf.path[1]), var, indent)
            return
        if leaf.filtered is not None:
            step = leaf.filtered
            self.read(step.inner, var, indent)
            args = self.name(step.args, "a")
            call = f"{self.name(step.function, 'f')}({var}, *{args})"
            if step.absent_aware:
                self.emit(indent, f"{var} = {call}")
                return
            condition = _PRESENT.format(v=var)
            if _query_shortcut(step):
                # f_query_param gives ABSENT for a text not containing the name: no call
                condition = f"{condition} and ({var}.__class__ is not str or {args}[0] in {var})"
            self.emit(indent, f"{var} = {call} if {condition} else ABSENT")
        elif leaf.function is not None:
            self.emit(indent, f"{var} = {self.name(leaf.function, 'f')}(scope)")
        elif leaf.alternatives:
            first, *rest = leaf.alternatives
            self.read(first, var, indent)
            depth = indent
            for option in rest:
                self.emit(depth, f"if not {_PRESENT.format(v=var)}:")
                depth += 1
                self.read(option, var, depth)
        else:
            self.emit(indent, f"{var} = {self.name(leaf.constant, 'c')}")

    def compile(self, name: str) -> Any:
        exec(_compiled("\n".join(self.lines), f"<mapping {name}>"), self.namespace)
        return self.namespace[name]


@lru_cache(maxsize=1024)
def _compiled(source: str, filename: str) -> Any:
    """The code object of ``source``: rules inheriting the same defaults generate the
    same source (objects are passed by name), so each distinct source compiles once."""
    return compile(source, filename, "exec")


def _query_shortcut(step: FilterStep) -> bool:
    """Whether ``step`` is ``query_param("name")``, which gives ABSENT for a text not
    containing the name (so the call can be skipped)."""
    return step.function is f_query_param and bool(step.args) and isinstance(step.args[0], str)


def _is_constant(leaf: Leaf) -> bool:
    """Whether ``leaf`` is a constant (its value known when the code is generated)."""
    return (
        leaf.path is None
        and not leaf.alternatives
        and leaf.function is None
        and leaf.filtered is None
    )


def _straight(leaf: Leaf) -> bool:
    """Whether reading ``leaf`` inline (:meth:`_Writer.read`) gives exactly what
    :func:`value_function` promises: true unless an alternative that may raise is
    followed by other alternatives (those must be tried after the error)."""
    if leaf.is_pure or not leaf.alternatives:
        return True
    *head, last = leaf.alternatives
    return all(option.is_pure for option in head) and _straight(last)


def value_function(leaf: Leaf) -> Callable[[Mapping[str, Any]], Any]:
    """One function computing ``leaf`` (first present alternative; ABSENT when none).

    An opaque alternative that raises ``EvalError`` is skipped; when no alternative is
    present, the first such error is raised.
    """
    if _straight(leaf):
        w = _Writer()
        w.emit(0, "def value(scope):")
        w.hoist([leaf])
        w.choose(leaf, 1, "return v")
        w.emit(1, "return ABSENT")
        function: Callable[[Mapping[str, Any]], Any] = w.compile("value")
        return function
    options = tuple(value_function(option) for option in leaf.alternatives)

    def first(scope: Mapping[str, Any]) -> Any:
        error: EvalError | None = None
        for option in options:
            try:
                value = option(scope)
            except EvalError as exc:
                error = error or exc
                continue
            if value is not ABSENT:
                return value
        if error is not None:
            raise error
        return ABSENT

    return first


@dataclass(frozen=True)
class Field:
    """One object field for :func:`object_builder`: either a ``leaf`` or a ``builder``
    (``builder(scope, warnings)``), with its coercer (or None) and warning label.

    ``fields``, when given, describes the object ``builder`` builds (it was made by
    :func:`object_builder` from them): the object is then built inline, in the
    function of the object holding it, sharing its path reads, instead of by a call.
    """

    key: str
    leaf: Leaf | None
    builder: Callable[[Mapping[str, Any], list[str]], Any] | None
    coerce: Callable[[Any], Any] | None
    label: str
    fields: tuple[Field, ...] | None = None

    @property
    def inline(self) -> bool:
        """Whether the field is an object built inline (nothing to coerce after it)."""
        return self.fields is not None and self.coerce is None


def _leaves(fields: Sequence[Field]) -> list[Leaf]:
    """The leaves of ``fields`` and of the objects built inline among them."""
    leaves: list[Leaf] = []
    for field in fields:
        if field.inline:
            assert field.fields is not None
            leaves.extend(_leaves(field.fields))
        elif field.leaf is not None:
            leaves.append(field.leaf)
    return leaves


def object_builder(fields: Sequence[Field]) -> Callable[[Mapping[str, Any], list[str]], Any]:
    """One function building an object: each present field coerced; a field that cannot
    be computed or coerced is left out with a warning ``<label>: <reason>; field
    dropped``; an empty object is ABSENT. Objects built inline (:attr:`Field.inline`)
    give exactly what calling their builder gives."""
    w = _Writer()
    w.emit(0, "def build(scope, warnings):")
    w.hoist(_leaves(fields))  # reading a path never raises
    _emit_object(w, fields, "out", 1)
    w.emit(1, "return out if out else ABSENT")
    builder: Callable[[Mapping[str, Any], list[str]], Any] = w.compile("build")
    return builder


def _emit_object(w: _Writer, fields: Sequence[Field], out: str, indent: int) -> None:
    """Emit code that builds the object of ``fields`` into the local ``out``."""
    w.emit(indent, f"{out} = {{}}")
    for field in fields:
        if field.inline:
            assert field.fields is not None
            inner = f"o{len(w.lines)}"  # unique: no two lines share a number
            _emit_object(w, field.fields, inner, indent)
            # the builder's result, an empty object being ABSENT, is present iff non-empty
            w.emit(indent, f"if {inner}:")
            w.emit(indent + 1, f"{out}[{field.key!r}] = {inner}")
            continue
        label = w.name(field.label, "l")
        coerce = w.name(field.coerce, "k") if field.coerce is not None else None
        if coerce is None:
            store = f"{out}[{field.key!r}] = v"
        elif field.coerce is to_unix_seconds:
            # the form validated messages carry, read without the coercer's frame
            store = (
                f"{out}[{field.key!r}] = t if v.__class__ is str and "
                f"(t := ISO_SECONDS(v)) is not None else {coerce}(v)"
            )
        elif field.coerce in _UNCHANGED:
            unchanged = _UNCHANGED[field.coerce].format(v="v")
            store = f"{out}[{field.key!r}] = v if {unchanged} else {coerce}(v)"
        else:
            store = f"{out}[{field.key!r}] = {coerce}(v)"
        guarded = field.leaf is None or not field.leaf.is_pure or coerce is not None
        depth = indent
        if guarded:
            w.emit(indent, "try:")
            depth = indent + 1
        sources = w.sources(field.leaf) if field.leaf is not None else None
        if sources and len(sources) < len(field.leaf.alternatives if field.leaf else ()):
            # all sources empty (e.g. no traits, no address): nothing to read or store
            w.emit(depth, f"if {' or '.join(sources)}:")
            depth += 1
        if field.leaf is not None and _straight(field.leaf):
            w.choose(field.leaf, depth, store)
        else:
            if field.leaf is not None:
                w.emit(depth, f"v = {w.name(value_function(field.leaf), 'f')}(scope)")
            else:
                w.emit(depth, f"v = {w.name(field.builder, 'b')}(scope, warnings)")
            w.emit(depth, f"if {_PRESENT.format(v='v')}:")
            w.emit(depth + 1, store)
        if guarded:
            w.emit(indent, "except (EvalError, CoerceError) as exc:")
            w.emit(indent + 1, f"warnings.append(f'{{{label}}}: {{exc}}; field dropped')")


def list_builder(items: Sequence[Field]) -> Callable[[Mapping[str, Any], list[str]], Any]:
    """One function building a fixed list (``list: [...]``): each present item coerced,
    in order; an item that cannot be computed or coerced is left out with a warning
    ``<label>: <reason>; item dropped``; an empty list is ABSENT. Object items
    (:attr:`Field.inline`) are built inline; ``key`` is unused."""
    w = _Writer()
    w.emit(0, "def build(scope, warnings):")
    w.hoist(_leaves(items))
    w.emit(1, "out = []")
    for item in items:
        if item.inline:
            assert item.fields is not None
            inner = f"o{len(w.lines)}"
            _emit_object(w, item.fields, inner, 1)
            w.emit(1, f"if {inner}:")
            w.emit(2, f"out.append({inner})")
            continue
        label = w.name(item.label, "l")
        w.emit(1, "try:")
        value = f"{w.name(item.coerce, 'k')}(v)" if item.coerce is not None else "v"
        if item.leaf is not None and _straight(item.leaf):
            w.choose(item.leaf, 2, f"out.append({value})")
        else:
            if item.leaf is not None:
                w.emit(2, f"v = {w.name(value_function(item.leaf), 'f')}(scope)")
            else:
                w.emit(2, f"v = {w.name(item.builder, 'b')}(scope, warnings)")
            w.emit(2, f"if {_PRESENT.format(v='v')}:")
            w.emit(3, f"out.append({value})")
        w.emit(1, "except (EvalError, CoerceError) as exc:")
        w.emit(2, f"warnings.append(f'{{{label}}}: {{exc}}; item dropped')")
    w.emit(1, "return out if out else ABSENT")
    builder: Callable[[Mapping[str, Any], list[str]], Any] = w.compile("build")
    return builder

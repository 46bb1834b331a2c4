"""Expressions and templates of the mapping language, compiled once at load.

A value written in a mapping file is either

* a **plain path** (``properties.order_id``, ``integrations["TikTok Conversions"].ttclid``)
  read directly from the message, without the template engine;
* a path followed by the language's own filters with constant arguments
  (``context.page.url | query_param("ttclid")``), also run without the template engine;
* any other **expression** (``properties.price * properties.quantity``), or a
  **template** (text containing ``{{ … }}``), compiled by Jinja's
  ``ImmutableSandboxedEnvironment``.

In every route a missing field is *absent* (:data:`ABSENT`), never ``"None"`` or ``""``:
rendering a missing value makes the whole template absent. Templates see JSON data
only: ``a.b`` reads key ``b`` of object ``a`` and nothing else (no Python attributes, no
method or function calls), comparisons are typed (``"3" == 3`` is false, ``"3" < 4`` is
an error), arithmetic needs numbers. Attribute names starting with ``_`` and calls are
refused when the file is validated; the sandbox refuses them again at run time.

Templates are bounded for every message (:data:`MAX_STRING` characters of text from
``~``, ``replace``, ``join`` or the template's output; :data:`MAX_LOOP_ITERATIONS`
``{% for %}`` iterations per evaluation; expressions nested at most
:data:`MAX_NESTING` levels). Jinja's constant folding is off, so nothing runs while a
file is compiled except the one bounded evaluation of values that read no message data
(:meth:`Compiler.compile_text`), whose failure is a load error.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, NoReturn

from jinja2 import nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

from cdp_tiktok.mapping.coerce import MAX_ITEMS, MAX_STRING, value_kind
from cdp_tiktok.mapping.filters import (
    ABSENT,
    ABSENT_AWARE,
    JINJA_FILTERS,
    PLAIN_FILTERS,
    present,
    standard_event_filter,
    t_named,
)
from cdp_tiktok.mapping.problems import Reporter

Value = Callable[[Mapping[str, Any]], Any]
"""A compiled value: message scope -> JSON value or :data:`ABSENT`; may raise EvalError."""

Path = tuple[str | int, ...]

#: Top-level fields of a Segment-spec message a mapping may read (``writeKey`` is a
#: credential and is not readable).
MESSAGE_FIELDS: Final = frozenset(
    {
        "type", "event", "name", "category", "properties", "traits", "context",
        "integrations", "userId", "anonymousId", "messageId", "timestamp",
        "originalTimestamp", "sentAt", "receivedAt", "groupId", "previousId", "channel",
        "version",
    }
)  # fmt: skip
#: ``context`` is a closed spec (segment-spec §3).
CONTEXT_FIELDS: Final = frozenset(
    {
        "active", "app", "campaign", "device", "direct", "groupId", "ip", "library",
        "locale", "location", "network", "os", "page", "referrer", "screen", "timezone",
        "traits", "userAgent", "userAgentData",
    }
)  # fmt: skip
MESSAGE_TYPES: Final = frozenset({"track", "identify", "page", "screen", "group", "alias"})
#: Settings readable as ``settings.<name>`` (constants of the loaded mapping set).
SETTINGS_FIELDS: Final = frozenset(
    {
        "event_source", "event_source_id", "test_event_code", "partner_name",
        "page_view_event", "content_type", "app_id", "limited_data_use",
        "default_phone_region", "default_page_url", "lead_event_source",
    }
)  # fmt: skip
_FORBIDDEN_ATTRS: Final = frozenset({"mro"})
#: ``{% for %}`` iterations one evaluation of a template may run (all its loops together).
MAX_LOOP_ITERATIONS: Final = 10_000
#: Deepest nesting of an expression (parentheses, operators, filters).
MAX_NESTING: Final = 50
_BUDGET: Final = "_loop_budget"  # scope key of the loop budget ('_' names are unreadable)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_SEGMENT = r"(?:\.[A-Za-z0-9_]+|\[\s*(?:-?\d+|\"[^\"\\]*\"|'[^'\\]*')\s*\])"
PLAIN_PATH = re.compile(rf"{_IDENT}{_SEGMENT}*")
_TEMPLATE_MARK = re.compile(r"\{\{|\{%|\{#")


class EvalError(Exception):
    """A value could not be computed; the message never contains event data."""


class _Missing(Undefined):
    """Undefined that refuses to become text, so a missing field makes its template absent."""

    __slots__ = ()

    def __str__(self) -> str:
        raise UndefinedError("missing value")


def _kind(value: Any) -> str:
    if isinstance(value, Undefined) or value is ABSENT:
        return "missing"
    return value_kind(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fail(message: str) -> NoReturn:
    raise EvalError(message)


def _typed_equal(left: Any, right: Any) -> bool:
    if isinstance(left, Undefined) or isinstance(right, Undefined):
        return False
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right) and not (
        isinstance(left, list | tuple) and isinstance(right, list | tuple)
    ):
        return False
    return bool(left == right)


def typed_compare(left: Any, op: str, right: Any) -> bool:
    """Jinja comparison with JSON typing: no number/text/boolean cross-equality,
    ordering only between two numbers or two texts; a missing operand makes an
    ordering false and ``==`` false."""
    if op == "eq":
        return _typed_equal(left, right)
    if op == "ne":
        return not _typed_equal(left, right)
    if op in ("in", "notin"):
        if isinstance(left, Undefined) or isinstance(right, Undefined):
            found = False
        elif isinstance(right, str):
            if not isinstance(left, str):
                _fail(f"'in' needs text on both sides, got {_kind(left)} in text")
            found = left in right
        elif isinstance(right, list | tuple):
            found = any(_typed_equal(left, item) for item in right)
        elif isinstance(right, dict):
            found = isinstance(left, str) and left in right
        else:
            _fail(f"'in' needs a list, object or text on the right, got {_kind(right)}")
        return found if op == "in" else not found
    if isinstance(left, Undefined) or isinstance(right, Undefined):
        return False
    if not (
        (_is_number(left) and _is_number(right))
        or (isinstance(left, str) and isinstance(right, str))
    ):
        _fail(f"cannot order {_kind(left)} and {_kind(right)} (use | number to convert)")
    if op == "lt":
        return bool(left < right)
    if op == "lteq":
        return bool(left <= right)
    if op == "gt":
        return bool(left > right)
    return bool(left >= right)


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox mapping templates run in: JSON data only, typed arithmetic."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``a.b`` reads key ``b`` of object ``a``; nothing else is reachable."""
        if isinstance(obj, dict):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        if attribute.startswith("_") or attribute in _FORBIDDEN_ATTRS:
            raise SecurityError(f"access to attribute {attribute!r} is not allowed")
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``a[k]`` reads a key of an object or an index/slice of a list."""
        if isinstance(obj, dict):
            if isinstance(argument, str) and argument in obj:
                return obj[argument]
            return self.undefined(obj=obj, name=str(argument))
        if isinstance(obj, list | tuple) and (
            (isinstance(argument, int) and not isinstance(argument, bool))
            or isinstance(argument, slice)
        ):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(obj=obj, name=str(argument))
        if isinstance(argument, str) and (argument.startswith("_") or argument in _FORBIDDEN_ATTRS):
            raise SecurityError(f"access to attribute {argument!r} is not allowed")
        return self.undefined(obj=obj, name=str(argument))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Arithmetic on numbers only (``+`` also joins two texts or two lists)."""
        if isinstance(left, Undefined) or isinstance(right, Undefined):
            raise UndefinedError("missing value")
        return arithmetic(operator, left, right)


def arithmetic(operator: str, left: Any, right: Any) -> Any:
    """``left <operator> right`` as the mapping language defines it, for present
    operands: numbers only, except ``+`` joining two texts or two lists within the
    caps. Raises :class:`EvalError` (never naming a value) otherwise. Both the Jinja
    route (:meth:`MappingEnvironment.call_binop`) and the direct route use it."""
    if operator == "+" and isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_STRING:
            _fail(f"text longer than {MAX_STRING} characters")
        return left + right
    if operator == "+" and isinstance(left, list) and isinstance(right, list):
        if len(left) + len(right) > MAX_ITEMS:
            _fail(f"list longer than {MAX_ITEMS} items")
        return left + right
    if not (_is_number(left) and _is_number(right)):
        _fail(f"cannot apply {operator} to {_kind(left)} and {_kind(right)}")
    if operator == "**" and (abs(right) > 64 or abs(left) > 1e12):
        _fail("exponent or base too large")
    try:
        result = _BINOPS[operator](left, right)
    except ZeroDivisionError:
        _fail("division by zero")
    except OverflowError:
        _fail("number too large")
    if isinstance(result, float) and not math.isfinite(result):
        _fail("result is not a finite number")
    return result


_BINOPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "**": lambda a, b: a**b,
}


class _TypedComparisons(NodeTransformer):
    """Rewrites ``a == b`` / ``a < b < c`` into calls of the typed comparison filter."""

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        left = node.expr
        parts: list[nodes.Expr] = []
        for operand in node.ops:
            parts.append(
                nodes.Filter(
                    left,
                    "_typed_compare",
                    [nodes.Const(operand.op), operand.expr],
                    [],
                    None,
                    None,
                    lineno=node.lineno,
                )
            )
            left = operand.expr
        result = parts[0]
        for part in parts[1:]:
            result = nodes.And(result, part, lineno=node.lineno)
        return result


def _did_you_mean(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class Compiler:
    """Compiles the values of one mapping set; one instance per set of filters/settings.

    ``plugin_filters`` are plain functions registered by plugins; a name that shadows a
    built-in filter is refused (see :meth:`refused_filters`). ``settings`` are the
    constants ``settings.<name>`` reads.
    """

    def __init__(
        self,
        *,
        plugin_filters: Mapping[str, Callable[..., Any]],
        settings: Mapping[str, Any],
    ) -> None:
        self.settings = dict(settings)
        # optimized=False: Jinja would otherwise fold constant expressions while
        # compiling, outside every bound (a chain of replace filters at load).
        env = MappingEnvironment(
            undefined=_Missing, autoescape=False, cache_size=0, optimized=False
        )
        env.globals.clear()
        env.globals["settings"] = self.settings
        kept = {name: env.filters[name] for name in JINJA_FILTERS if name in env.filters}
        env.filters.clear()
        env.filters.update(kept)
        own = dict(PLAIN_FILTERS)  # standard_event depends on the configured event source
        own["standard_event"] = standard_event_filter(str(settings.get("event_source", "web")))
        builtin = set(kept) | set(own)
        self.refused_filters = sorted(set(plugin_filters) & builtin)
        self.plain: dict[str, Callable[..., Any]] = own
        for name, function in plugin_filters.items():
            if name not in builtin:
                self.plain[name] = _plugin_filter(name, function)
        for name, function in self.plain.items():
            env.filters[name] = _jinja_filter(env, name, function)
        for name in _GROWING_FILTERS & set(kept):
            env.filters[name] = _capped_filter(env.filters[name])
        env.filters["_typed_compare"] = typed_compare
        env.filters["_concat"] = _concat
        env.filters["_loop_items"] = _loop_items
        env.tests["named"] = t_named
        self.builtin_filters = frozenset(builtin)
        self._refused = False
        self.leaf_cache: dict[tuple[int, frozenset[str]], tuple[Any, Any]] = {}
        self.env = env

    # --- parsing and static checks ---------------------------------------------------

    def parse_expression(
        self, source: str, report: Reporter, at: Path, label: str = ""
    ) -> nodes.Expr | None:
        """Parse one expression; report a syntax error at ``at`` and return ``None``."""
        deep = f"{label + ': ' if label else ''}expression nested more than {MAX_NESTING} levels"
        try:
            parser = Parser(self.env, source, state="variable")
            expr = parser.parse_expression()
            if not parser.stream.eos:
                token = parser.stream.current
                report.error(at, f"unexpected {token.value!r} in expression {source!r}")
                return None
        except TemplateError as exc:
            report.error(at, f"invalid expression {source!r}: {exc.message or exc}")
            return None
        except RecursionError:
            report.error(at, deep)
            return None
        if _too_deep(expr):
            report.error(at, deep)
            return None
        return expr

    def check(self, tree: nodes.Node, report: Reporter, at: Path, roots: Collection[str]) -> bool:
        """Static checks of a parsed expression or template: no ``_`` attributes, no
        calls, no imports, known filters and tests, known fields. Reports every problem;
        returns True when there is none."""
        before = len(report.problems)
        local_names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
        if any(True for _ in tree.find_all(nodes.For)):
            local_names.add("loop")
        allowed = set(roots) | local_names
        self._refused = False
        for node in (tree, *tree.find_all(nodes.Node)):
            if isinstance(node, nodes.Getattr):
                self._check_attribute(node.attr, node.node, report, at)
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                if isinstance(node.arg.value, str):
                    self._check_attribute(node.arg.value, node.node, report, at)
            elif isinstance(node, nodes.Call):
                report.error(
                    at,
                    "function and method calls are not part of the mapping language "
                    "(use a filter such as | lower)",
                )
            elif isinstance(
                node,
                nodes.Extends
                | nodes.Include
                | nodes.Import
                | nodes.FromImport
                | nodes.Macro
                | nodes.CallBlock,
            ):
                report.error(at, f"{type(node).__name__.lower()} is not allowed in mappings")
            elif isinstance(node, nodes.Filter) and node.name is not None:
                if (node.name not in self.plain and node.name not in self.env.filters) or (
                    node.name.startswith("_")
                ):
                    report.error(
                        at,
                        f"unknown filter {node.name!r}"
                        + _did_you_mean(node.name, self.plain.keys() | JINJA_FILTERS),
                    )
            elif isinstance(node, nodes.Test) and node.name not in self.env.tests:
                report.error(at, f"unknown test {node.name!r}")
            elif isinstance(node, nodes.Name) and node.ctx == "load":
                if node.name not in allowed:
                    hint = _did_you_mean(node.name, allowed)
                    extra = (
                        " (writeKey is a credential and cannot be read)"
                        if node.name == "writeKey"
                        else hint or " (quote literal text: 'text')"
                    )
                    report.error(at, f"unknown field {node.name!r}{extra}")
            elif isinstance(node, nodes.Compare):
                self._check_type_compare(node, report, at)
        return len(report.problems) == before

    def _check_attribute(self, attr: str, owner: nodes.Node, report: Reporter, at: Path) -> None:
        if attr.startswith("_") or attr in _FORBIDDEN_ATTRS:
            if self._refused:  # one sandbox error per expression is enough
                return
            self._refused = True
            report.error(
                at,
                f"access to {attr!r} is refused: names starting with '_' (and 'mro') "
                "reach Python internals, which the sandbox forbids",
            )
            return
        if isinstance(owner, nodes.Name) and owner.name == "context" and attr not in CONTEXT_FIELDS:
            report.error(
                at,
                f"unknown context field {attr!r} (context is a closed spec)"
                + _did_you_mean(attr, CONTEXT_FIELDS),
            )
        if (
            isinstance(owner, nodes.Name)
            and owner.name == "settings"
            and attr not in SETTINGS_FIELDS
        ):
            readable = ", ".join(sorted(SETTINGS_FIELDS))
            report.error(at, f"unknown setting {attr!r}; readable: {readable}")

    def _check_type_compare(self, node: nodes.Compare, report: Reporter, at: Path) -> None:
        operands = [node.expr, *(op.expr for op in node.ops)]
        if not any(isinstance(o, nodes.Name) and o.name == "type" for o in operands):
            return
        for operand in operands:
            values: list[Any] = []
            if isinstance(operand, nodes.Const):
                values = [operand.value]
            elif isinstance(operand, nodes.List | nodes.Tuple):
                values = [i.value for i in operand.items if isinstance(i, nodes.Const)]
            for value in values:
                if isinstance(value, str) and value not in MESSAGE_TYPES:
                    report.error(
                        at,
                        f"unknown message type {value!r}; types are "
                        f"{', '.join(sorted(MESSAGE_TYPES))}",
                    )

    # --- compilation ---------------------------------------------------------------

    def compile_node(self, expr: nodes.Expr) -> Value:
        """Compile a checked expression AST: a direct reader when possible, else Jinja.

        Both routes give the same value or raise the same :class:`EvalError`
        (``tests/test_fastpaths_mapping.py`` compares them)."""
        fast = self._fast(expr)
        if fast is not None:
            return fast
        inner = self._fast_arithmetic(expr)
        if inner is not None:
            return _arithmetic_value(inner)
        defined = self._fast_defined(expr)
        if defined is not None:
            return defined
        return self.compile_jinja(expr)

    def compile_jinja(self, expr: nodes.Expr) -> Value:
        """Compile a checked expression AST with Jinja only (the reference route)."""
        data_free = not _reads_message(expr)
        expr = _Bounded().visit(_TypedComparisons().visit(expr))
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        template = self.env.from_string(nodes.Template(body, lineno=1))
        return _jinja_value(template, expression=True, data_free=data_free)

    def compile_template(
        self, source: str, report: Reporter, at: Path, roots: Collection[str], label: str = ""
    ) -> Value | None:
        """Compile a text template (``{{ … }}`` inside text); ``None`` after reporting."""
        deep = f"{label + ': ' if label else ''}template nested more than {MAX_NESTING} levels"
        whole = re.fullmatch(r"\{\{(.*)\}\}", source.strip(), re.DOTALL)
        if whole and "{{" not in whole.group(1) and "}}" not in whole.group(1):
            expr = self.parse_expression(whole.group(1), report, at, label)
            if expr is None or not self.check(expr, report, at, roots):
                return None
            return self.compile_checked(expr, report, at)
        try:
            tree = self.env.parse(source)
        except TemplateError as exc:
            report.error(at, f"invalid template: {exc.message or exc}")
            return None
        except RecursionError:
            report.error(at, deep)
            return None
        if _too_deep(tree):
            report.error(at, deep)
            return None
        if not self.check(tree, report, at, roots):
            return None
        data_free = not _reads_message(tree)
        tree = _Bounded().visit(_TypedComparisons().visit(tree))
        try:
            template = self.env.from_string(tree)
        except (TemplateError, RecursionError) as exc:
            report.error(at, f"invalid template: {getattr(exc, 'message', None) or exc}")
            return None
        return _jinja_value(template, expression=False, data_free=data_free)

    def compile_text(
        self, source: str, report: Reporter, at: Path, roots: Collection[str], label: str = ""
    ) -> Value | None:
        """Compile a value written as text: a template when it holds ``{{``/``{%``,
        otherwise an expression (plain paths read directly). ``None`` after reporting.

        A value that reads no message data is evaluated once, here, within the same
        bounds as at run time: if that fails (output or loop cap, a type error), it
        would fail for every message, so it is an error now, prefixed with ``label``.
        """
        if _TEMPLATE_MARK.search(source):
            value = self.compile_template(source, report, at, roots, label)
        else:
            expr = self.parse_expression(source, report, at, label)
            if expr is None or not self.check(expr, report, at, roots):
                return None
            value = self.compile_checked(expr, report, at)
        if value is not None and getattr(value, "jinja_data_free", False):
            try:
                value({})
            except EvalError as exc:
                report.error(at, f"{label}: {exc}" if label else str(exc))
                return None
        return value

    def compile_checked(self, expr: nodes.Expr, report: Reporter, at: Path) -> Value | None:
        """:meth:`compile_node`, reporting a compilation error instead of raising."""
        try:
            return self.compile_node(expr)
        except TemplateError as exc:
            report.error(at, f"cannot compile: {exc.message or exc}")
            return None

    # --- the direct route ------------------------------------------------------------

    def _fast(self, expr: nodes.Expr) -> Value | None:
        if isinstance(expr, nodes.Const):
            return constant(expr.value)
        path = _path_of(expr)
        if path is not None and not any(
            isinstance(k, str) and (k.startswith("_") or k in _FORBIDDEN_ATTRS) for k in path[1]
        ):  # such keys go through the sandbox, which refuses them
            root, keys = path
            if root == "settings":
                return constant(_read(self.settings, keys))
            return _path_reader(root, keys)
        if isinstance(expr, nodes.Filter) and expr.node is not None:
            function = self.plain.get(expr.name)
            inner = self._fast(expr.node)
            if (
                function is None
                or inner is None
                or expr.kwargs
                or expr.dyn_args is not None
                or expr.dyn_kwargs is not None
                or not all(isinstance(a, nodes.Const) for a in expr.args)
            ):
                return None
            args = tuple(a.value for a in expr.args if isinstance(a, nodes.Const))
            value = _filtered(inner, function, args, expr.name in ABSENT_AWARE)
            pure = expr.name in PLAIN_FILTERS
            value.filter_spec = (inner, function, args, expr.name in ABSENT_AWARE, pure)  # type: ignore[attr-defined]
            return value
        return None

    def _fast_defined(self, expr: nodes.Expr) -> Value | None:
        """``<direct value> is defined`` without Jinja (a trigger such as
        ``event | standard_event is defined`` runs per message), or ``None``."""
        if not (
            isinstance(expr, nodes.Test)
            and expr.name == "defined"
            and not expr.args
            and not expr.kwargs
            and expr.dyn_args is None
            and expr.dyn_kwargs is None
        ):
            return None
        inner = self._fast(expr.node)
        if inner is None:
            return None

        def defined(scope: Mapping[str, Any]) -> bool:
            return inner(scope) is not ABSENT

        return defined

    def _fast_arithmetic(self, expr: nodes.Expr) -> Value | None:
        """``a <op> b`` over direct values (nested arithmetic allowed), or ``None``.

        The returned function raises :class:`_MissingOperand` where Jinja would raise
        ``UndefinedError`` (a missing operand ends the whole expression); only the
        outermost wrapper (:func:`_arithmetic_value`) turns it into :data:`ABSENT`.
        """
        if not isinstance(expr, nodes.BinExpr) or expr.operator not in _BINOPS:
            return None
        left = self._fast(expr.left) or self._fast_arithmetic(expr.left)
        right = self._fast(expr.right) or self._fast_arithmetic(expr.right)
        if left is None or right is None:
            return None
        return _binop(expr.operator, left, right)


class _MissingOperand(Exception):
    """An arithmetic operand is missing: the whole expression is absent."""


def _binop(operator: str, left: Value, right: Value) -> Value:
    def run(scope: Mapping[str, Any]) -> Any:
        a = left(scope)  # Jinja evaluates both operands, left first, before the operator
        b = right(scope)
        if a is ABSENT or b is ABSENT:
            raise _MissingOperand
        return arithmetic(operator, a, b)

    return run


def _arithmetic_value(inner: Value) -> Value:
    def run(scope: Mapping[str, Any]) -> Any:
        try:
            return inner(scope)
        except _MissingOperand:
            return ABSENT
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvalError(f"{type(exc).__name__} while evaluating") from None

    return run


def _read(data: Any, keys: tuple[str | int, ...]) -> Any:
    value = data
    for key in keys:
        if isinstance(value, dict) and isinstance(key, str):
            value = value.get(key, ABSENT)
        elif isinstance(value, list) and isinstance(key, int):
            try:
                value = value[key]
            except IndexError:
                return ABSENT
        else:
            return ABSENT
    return value


def _path_of(expr: nodes.Expr) -> tuple[str, tuple[str | int, ...]] | None:
    keys: list[str | int] = []
    node: nodes.Node = expr
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            value = node.arg.value
            if isinstance(value, bool) or not isinstance(value, str | int):
                return None
            keys.append(value)
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            return node.name, tuple(reversed(keys))
        else:
            return None


def constant(value: Any) -> Value:
    """A compiled value that always gives ``value``."""

    def const(scope: Mapping[str, Any]) -> Any:
        return value

    const.constant = value  # type: ignore[attr-defined]
    return const


def _path_reader(root: str, keys: tuple[str | int, ...]) -> Value:
    reader = _path_function(root, keys)
    reader.path_spec = (root, keys)  # type: ignore[attr-defined]
    return reader


def _path_function(root: str, keys: tuple[str | int, ...]) -> Value:
    if all(isinstance(k, str) for k in keys):
        if not keys:

            def read0(scope: Mapping[str, Any]) -> Any:
                return scope.get(root, ABSENT)

            return read0
        if len(keys) == 1:
            (k1,) = keys

            def read1(scope: Mapping[str, Any]) -> Any:
                value = scope.get(root)
                if value.__class__ is dict:
                    return value.get(k1, ABSENT)
                return ABSENT

            return read1
        if len(keys) == 2:
            k1, k2 = keys

            def read2(scope: Mapping[str, Any]) -> Any:
                value = scope.get(root)
                if value.__class__ is dict:
                    value = value.get(k1)
                    if value.__class__ is dict:
                        return value.get(k2, ABSENT)
                return ABSENT

            return read2

        def readn(scope: Mapping[str, Any]) -> Any:
            value = scope.get(root)
            for key in keys:
                if value.__class__ is not dict:
                    return ABSENT
                value = value.get(key, ABSENT)
            return value

        return readn

    def read_mixed(scope: Mapping[str, Any]) -> Any:
        return _read(scope.get(root, ABSENT), keys)

    return read_mixed


def _filtered(
    inner: Value, function: Callable[..., Any], args: tuple[Any, ...], absent_aware: bool
) -> Value:
    def apply(scope: Mapping[str, Any]) -> Any:
        value = inner(scope)
        if not absent_aware and not present(value):
            return ABSENT
        return function(value, *args)

    return apply


def _plugin_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(value: Any, *args: Any) -> Any:
        if value is ABSENT:
            return ABSENT
        try:
            result = function(value, *(None if a is ABSENT else a for a in args))
        except Exception as exc:
            raise EvalError(f"filter {name!r} failed ({type(exc).__name__})") from None
        return ABSENT if result is None else result

    call.__name__ = f"plugin_filter_{name}"
    return call


def _jinja_filter(
    env: MappingEnvironment, name: str, function: Callable[..., Any]
) -> Callable[..., Any]:
    absent_aware = name in ABSENT_AWARE

    def call(value: Any, *args: Any) -> Any:
        if isinstance(value, Undefined):
            value = ABSENT
        if not absent_aware and not present(value):
            return env.undefined(name=name)
        plain_args = [ABSENT if isinstance(a, Undefined) else a for a in args]
        result = function(value, *plain_args)
        return env.undefined(name=name) if result is ABSENT else result

    return call


def _jinja_value(template: Template, *, expression: bool, data_free: bool) -> Value:
    render = template.root_render_func
    new_context = template.new_context

    def run(scope: Mapping[str, Any]) -> Any:
        variables = dict(scope)
        variables[_BUDGET] = [MAX_LOOP_ITERATIONS]
        context = new_context(variables)
        try:
            if expression:
                for _ in render(context):
                    pass
                result = context.vars.get("result")
            else:
                parts = []
                size = 0
                for part in render(context):
                    size += len(part)
                    if size > MAX_STRING:
                        _fail(f"template output longer than {MAX_STRING} characters")
                    parts.append(part)
                result = "".join(parts)
        except UndefinedError:
            return ABSENT
        except SecurityError as exc:
            raise EvalError(f"refused by the sandbox: {exc}") from None
        except EvalError:
            raise
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise EvalError(f"{type(exc).__name__} while evaluating") from None
        except (RecursionError, MemoryError):
            raise EvalError("the template is too large to evaluate") from None
        if isinstance(result, Undefined):
            return ABSENT
        if isinstance(result, tuple):
            return list(result)
        return result

    run.jinja_data_free = data_free  # type: ignore[attr-defined]
    return run


def _reads_message(tree: nodes.Node) -> bool:
    """True unless ``tree`` reads only constants, settings and its own variables (then
    one evaluation at load tells how every evaluation ends)."""
    local = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    local |= {"loop", "settings"}
    return any(n.ctx == "load" and n.name not in local for n in tree.find_all(nodes.Name))


#: Jinja filters whose text result can be much longer than their input.
_GROWING_FILTERS: Final = frozenset({"replace", "join", "urlencode"})


def _capped_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` refusing a text result longer than :data:`MAX_STRING`; ``replace``
    is refused before it runs when its result would be too long."""

    def call(*args: Any, **kwargs: Any) -> Any:
        text, old, new = (*args[1:4], None, None, None)[:3]
        if (
            function.__name__ == "do_replace"
            and isinstance(text, str)
            and isinstance(old, str)
            and isinstance(new, str)
        ):
            hits = text.count(old) if old else len(text) + 1
            if len(text) + hits * (len(new) - len(old)) > MAX_STRING:
                _fail(f"replace would make text longer than {MAX_STRING} characters")
        result = function(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_STRING:
            _fail(f"text longer than {MAX_STRING} characters")
        return result

    pass_arg = getattr(function, "jinja_pass_arg", None)
    if pass_arg is not None:
        call.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    call.__name__ = function.__name__
    return call


def _concat(parts: list[Any]) -> str:
    """``a ~ b ~ …`` as text, refused beyond :data:`MAX_STRING` characters."""
    texts = [str(part) for part in parts]
    if sum(len(text) for text in texts) > MAX_STRING:
        _fail(f"text longer than {MAX_STRING} characters (~)")
    return "".join(texts)


@pass_context
def _loop_items(context: Context, items: Any) -> Any:
    """The items of a ``{% for %}``, counted against the evaluation's loop budget."""
    budget = context.get(_BUDGET)
    if isinstance(items, Undefined) or budget is None:
        return
    for item in items:
        if budget[0] <= 0:
            _fail(f"template loops ran more than {MAX_LOOP_ITERATIONS} times")
        budget[0] -= 1
        yield item


class _Bounded(NodeTransformer):
    """Routes ``~`` through :func:`_concat` and every ``{% for %}`` through
    :func:`_loop_items`, so both are bounded at run time."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(items, "_concat", [], [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_loop_items", [], [], None, None, lineno=node.lineno)
        return node


def _too_deep(tree: nodes.Node) -> bool:
    """True when ``tree`` nests more than :data:`MAX_NESTING` expression levels."""
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        below = depth + 1 if isinstance(node, nodes.Expr) else depth
        stack.extend((child, below) for child in node.iter_child_nodes())
    return False

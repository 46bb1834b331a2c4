"""Triggers: when a rule fires, as a sandboxed expression, with an index.

A trigger is an expression of the mapping language (``type == "track" and event in
["Order Completed", "Order Placed"]``) with Jinja's precedence (``not`` > ``and`` >
``or``; parentheses nest) and typed comparisons. The leading conjuncts
``type == "…"``, ``type in [...]``, ``event == "…"``, ``event in [...]`` and
``event is named "…"`` / ``event is named [...]`` (names compared by
:func:`~cdp_tiktok.tiktok.catalog.name_key`: case, spaces, ``_`` and ``-`` ignored) are
lifted into an index key (:attr:`Trigger.types`, :attr:`Trigger.events`,
:attr:`Trigger.event_keys`): a message only evaluates the rules whose key admits its
``(type, event)``, and a rule whose trigger is nothing but such conjuncts fires without
evaluating anything.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes

from cdp_tiktok.mapping.compiler import Compiler, EvalError, Value
from cdp_tiktok.mapping.filters import present
from cdp_tiktok.mapping.problems import Reporter
from cdp_tiktok.tiktok.catalog import name_key

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Trigger:
    """A compiled trigger.

    ``types``/``events``/``event_keys``: the index key (``None`` = any); ``event_keys``
    holds :func:`name_key` values of ``event is named`` tests. ``rest``: the part of
    the expression the index does not decide (``None`` = nothing left: index match
    means fire). ``full``: the whole expression, evaluated without the index (used by
    explain and by tests that compare both routes).
    """

    source: str
    types: frozenset[str] | None
    events: frozenset[str] | None
    rest: Value | None
    full: Value
    event_keys: frozenset[str] | None = None

    def admits(self, message_type: Any, event: Any, key: str | None = None) -> bool:
        """Whether the index key admits a message of this type and event (``key``:
        the event's :func:`name_key`, computed here when not given)."""
        if self.types is not None and message_type not in self.types:
            return False
        if self.events is not None and event not in self.events:
            return False
        if self.event_keys is None:
            return True
        if key is None:
            key = name_key(event) if isinstance(event, str) else None
        return key in self.event_keys

    def test_rest(self, scope: Mapping[str, Any]) -> bool:
        """``rest`` alone, for a message the index already admitted. Raises ``EvalError``."""
        return self.rest is None or _truthy(self.rest(scope))

    def test(self, scope: Mapping[str, Any]) -> bool:
        """The indexed route: index key, then ``rest``. Raises ``EvalError``."""
        if not self.admits(scope.get("type"), scope.get("event")):
            return False
        return self.test_rest(scope)

    def test_full(self, scope: Mapping[str, Any]) -> bool:
        """The slow route: the whole expression. Raises ``EvalError``."""
        return _truthy(self.full(scope))


def _truthy(value: Any) -> bool:
    return bool(value) and present(value)


def _conjuncts(expr: nodes.Expr) -> list[nodes.Expr]:
    if isinstance(expr, nodes.And):
        return _conjuncts(expr.left) + _conjuncts(expr.right)
    return [expr]


def _string_set(node: nodes.Expr) -> frozenset[str] | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return frozenset({node.value})
    if isinstance(node, nodes.List | nodes.Tuple):
        values = []
        for item in node.items:
            if not (isinstance(item, nodes.Const) and isinstance(item.value, str)):
                return None
            values.append(item.value)
        return frozenset(values)
    return None


def _named_term(expr: nodes.Expr) -> tuple[str, frozenset[str]] | None:
    """``event is named "…"`` / ``event is named [...]`` with string constants."""
    if not (
        isinstance(expr, nodes.Test)
        and expr.name == "named"
        and isinstance(expr.node, nodes.Name)
        and expr.node.name == "event"
        and len(expr.args) == 1
        and not expr.kwargs
        and expr.dyn_args is None
        and expr.dyn_kwargs is None
    ):
        return None
    values = _string_set(expr.args[0])
    if values is None:
        return None
    return "event_key", frozenset(name_key(v) for v in values)


def _index_term(expr: nodes.Expr) -> tuple[str, frozenset[str]] | None:
    """``type``/``event`` compared for equality or membership with string constants,
    or ``event is named`` (key ``event_key``, values normalized by :func:`name_key`)."""
    named = _named_term(expr)
    if named is not None:
        return named
    if not isinstance(expr, nodes.Compare) or len(expr.ops) != 1:
        return None
    left, (operand,) = expr.expr, expr.ops
    right = operand.expr
    if operand.op == "eq":
        if isinstance(right, nodes.Name) and not isinstance(left, nodes.Name):
            left, right = right, left
    elif operand.op != "in":
        return None
    if not (isinstance(left, nodes.Name) and left.name in ("type", "event")):
        return None
    values = _string_set(right)
    if values is None or (operand.op == "eq" and len(values) != 1):
        return None
    return left.name, values


def compile_trigger(
    compiler: Compiler, source: str, report: Reporter, at: Path, roots: Collection[str]
) -> Trigger | None:
    """Parse, check and compile ``source``; report problems at ``at`` and return None."""
    expr = compiler.parse_expression(source, report, at)
    if expr is None or not compiler.check(expr, report, at, roots):
        return None
    index: dict[str, frozenset[str]] = {}
    rest: list[nodes.Expr] = []
    for term in _conjuncts(expr):
        found = _index_term(term)
        if found is None:
            rest.append(term)
        else:
            kind, values = found
            index[kind] = values if kind not in index else index[kind] & values
    types, events, keys = index.get("type"), index.get("event"), index.get("event_key")
    if events is not None and keys is not None:  # exact names decide; keys add nothing
        events, keys = frozenset(e for e in events if name_key(e) in keys), None
    if (events is not None or keys is not None) and types is not None and "track" not in types:
        report.warning(at, "this trigger tests `event`, which only track calls have")
    if any(values is not None and not values for values in (types, events, keys)):
        report.warning(at, "this trigger can never be true (contradictory type/event tests)")
    remainder: Value | None = None
    if rest:
        node = rest[0]
        for term in rest[1:]:
            node = nodes.And(node, term, lineno=node.lineno)
        remainder = compiler.compile_checked(node, report, at)
        if remainder is None:
            return None
    # A second parse: compilation rewrites comparison nodes in place.
    full_expr = compiler.parse_expression(source, report, at)
    full = None if full_expr is None else compiler.compile_checked(full_expr, report, at)
    if full is None:
        return None
    return Trigger(source, types, events, remainder, full, keys)


__all__ = ["EvalError", "Trigger", "compile_trigger"]

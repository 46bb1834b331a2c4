"""Triggers: when a rule fires, as a sandboxed expression, with an index.

A trigger is an expression of the mapping language (``type == "track" and event in
["Order Completed", "Order Placed"]``) with Jinja's precedence (``not`` > ``and`` >
``or``; parentheses nest) and typed comparisons. The leading conjuncts
``type == "…"``, ``type in [...]``, ``event == "…"`` and ``event in [...]`` are lifted
into an index key (:attr:`Trigger.types`, :attr:`Trigger.events`): a message only
evaluates the rules whose key admits its ``(type, event)``, and a rule whose trigger is
nothing but such conjuncts fires without evaluating anything.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes

from cdp_tiktok.mapping.compiler import Compiler, EvalError, Value
from cdp_tiktok.mapping.filters import present
from cdp_tiktok.mapping.problems import Reporter

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Trigger:
    """A compiled trigger.

    ``types``/``events``: the index key (``None`` = any). ``rest``: the part of the
    expression the index does not decide (``None`` = nothing left: index match means
    fire). ``full``: the whole expression, evaluated without the index (used by explain
    and by tests that compare both routes).
    """

    source: str
    types: frozenset[str] | None
    events: frozenset[str] | None
    rest: Value | None
    full: Value

    def admits(self, message_type: Any, event: Any) -> bool:
        """Whether the index key admits a message of this type and event."""
        if self.types is not None and message_type not in self.types:
            return False
        return self.events is None or event in self.events

    def test(self, scope: Mapping[str, Any]) -> bool:
        """The indexed route: index key, then ``rest``. Raises ``EvalError``."""
        if not self.admits(scope.get("type"), scope.get("event")):
            return False
        return self.rest is None or _truthy(self.rest(scope))

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


def _index_term(expr: nodes.Expr) -> tuple[str, frozenset[str]] | None:
    """``type``/``event`` compared for equality or membership with string constants."""
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
    types: frozenset[str] | None = None
    events: frozenset[str] | None = None
    rest: list[nodes.Expr] = []
    for term in _conjuncts(expr):
        found = _index_term(term)
        if found is None:
            rest.append(term)
        elif found[0] == "type":
            types = found[1] if types is None else types & found[1]
        else:
            events = found[1] if events is None else events & found[1]
    if events is not None and types is not None and "track" not in types:
        report.warning(at, "this trigger tests `event`, which only track calls have")
    if (types is not None and not types) or (events is not None and not events):
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
    return Trigger(source, types, events, remainder, full)


__all__ = ["EvalError", "Trigger", "compile_trigger"]

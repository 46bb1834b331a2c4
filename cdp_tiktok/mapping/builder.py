"""Output specs -> builder functions: objects, alternatives, loops and typed leaves.

A builder is ``build(scope, warnings) -> value | ABSENT``. Objects build field by field;
each field is coerced to its TikTok type (:mod:`cdp_tiktok.mapping.coerce`) and a field
whose value cannot be computed or coerced is dropped with a warning naming the rule and
the field, while the rest of the object is kept. Empty objects and lists are absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from cdp_tiktok.mapping.codegen import (
    Field,
    FilterStep,
    Leaf,
    list_builder,
    object_builder,
    value_function,
)
from cdp_tiktok.mapping.coerce import (
    CONTENT_KEYS,
    FIELD_TYPES,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_LOOP_ITEMS,
    CoerceError,
    coercer_for,
)
from cdp_tiktok.mapping.compiler import MESSAGE_FIELDS, Compiler, EvalError, Value, constant
from cdp_tiktok.mapping.filters import ABSENT, present
from cdp_tiktok.mapping.problems import Reporter

Path = tuple[str | int, ...]
Builder = Callable[[Mapping[str, Any], list[str]], Any]
Coercer = Callable[[Any], Any]
_LOOP = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s+in\s+(.+?)\s*")


class Node:
    """A compiled spec: either a leaf (``value``, described by ``shape`` for code
    generation; may raise EvalError) or a builder that reports its own fields
    (``fields`` describes an object builder's fields, so a parent can build it inline)."""

    __slots__ = ("build", "fields", "leaf", "shape")

    def __init__(
        self,
        leaf: Value | None = None,
        build: Builder | None = None,
        shape: Leaf | None = None,
        fields: tuple[Field, ...] | None = None,
    ) -> None:
        self.leaf = leaf
        self.build = build
        self.shape = shape if shape is not None or leaf is None else describe(leaf)
        self.fields = fields

    def run(self, scope: Mapping[str, Any], warnings: list[str]) -> Any:
        """Evaluate (leaves may raise EvalError; builders report their own fields)."""
        if self.leaf is not None:
            return self.leaf(scope)
        assert self.build is not None
        return self.build(scope, warnings)


class SpecCompiler:
    """Compiles the output specs of one rule; ``label`` prefixes its warnings."""

    def __init__(self, compiler: Compiler, report: Reporter, label: str) -> None:
        self.compiler = compiler
        self.report = report
        self.label = label
        self._loop_items = 1  # items the loops around the spec being compiled may make

    def value(
        self, raw: Any, at: Path, target: str, roots: Collection[str], depth: int = 0
    ) -> Node | None:
        """Compile one value spec (see the schema); ``None`` after reporting problems."""
        if depth > MAX_DEPTH:
            self.report.error(at, f"output nested deeper than {MAX_DEPTH} levels")
            return None
        if raw is None:
            return Node(leaf=_absent)
        if isinstance(raw, bool | int | float):
            return Node(leaf=constant(raw))
        if isinstance(raw, str | list):
            # Leaves carry no rule label, so one compilation serves every rule that
            # inherits the same default (the cache holds `raw`, keeping its id unique).
            key = (id(raw), frozenset(roots))
            cached = self.compiler.leaf_cache.get(key)
            if cached is not None:
                hit: Node = cached[1]
                return hit
            if isinstance(raw, str):
                label = f"{self.label}: {target}"
                leaf = self.compiler.compile_text(raw, self.report, at, roots, label)
                node = None if leaf is None else Node(leaf=leaf)
            else:
                node = self._alternatives(raw, at, target, roots, depth)
            if node is not None and node.leaf is not None:
                self.compiler.leaf_cache[key] = (raw, node)
            return node
        if isinstance(raw, dict):
            if "for" in raw:
                return self._loop(raw, at, target, roots, depth)
            if "list" in raw:
                return self._fixed_list(raw["list"], (*at, "list"), target, roots, depth)
            return self.object({k: (v, (*at, k)) for k, v in raw.items()}, target, roots, depth + 1)
        self.report.error(at, f"unsupported value of type {type(raw).__name__}")
        return None

    def object(
        self,
        fields: Mapping[str, tuple[Any, Path]],
        target: str,
        roots: Collection[str],
        depth: int = 0,
        *,
        typed: bool = True,
    ) -> Node | None:
        """Compile an object whose fields are ``name -> (spec, doc path)``."""
        compiled: list[tuple[str, Node, Coercer | None, str]] = []
        ok = True
        for key, (raw, at) in fields.items():
            path = f"{target}.{key}" if target else key
            if target == "properties.contents[]" and key not in CONTENT_KEYS:
                self.report.warning(
                    at,
                    f"{path}: TikTok's contents items carry only {', '.join(sorted(CONTENT_KEYS))}",
                )
            node = self.value(raw, at, path, roots, depth)
            if node is None:
                ok = False
                continue
            if node.leaf is _absent:
                continue
            coerce: Callable[[Any], Any] | None = None
            if typed and (node.leaf is not None or path in FIELD_TYPES):
                coerce = coercer_for(path)
            compiled.append((key, node, coerce, f"{self.label}: {path}"))
        if not ok:
            return None
        fields_ = tuple(field_of(key, node, coerce, label) for key, node, coerce, label in compiled)
        return Node(build=object_builder(fields_), fields=fields_)

    def _alternatives(
        self, raw: list[Any], at: Path, target: str, roots: Collection[str], depth: int
    ) -> Node | None:
        nodes_: list[Node] = []
        for index, item in enumerate(raw):
            node = self.value(item, (*at, index), target, roots, depth)
            if node is None:
                return None
            nodes_.append(node)
        shapes = [n.shape for n in nodes_]
        if all(shape is not None for shape in shapes):
            shape = Leaf(alternatives=tuple(s for s in shapes if s is not None))
            return Node(leaf=value_function(shape), shape=shape)
        options = tuple(node.build or _leaf_runner(node) for node in nodes_)

        def first(scope: Mapping[str, Any], warnings: list[str]) -> Any:
            error: EvalError | None = None
            for option in options:
                try:
                    value = option(scope, warnings)
                except EvalError as exc:
                    error = error or exc
                    continue
                if present(value):
                    return value
            if error is not None:
                raise error
            return ABSENT

        return Node(build=first)

    def _fixed_list(
        self, raw: list[Any], at: Path, target: str, roots: Collection[str], depth: int
    ) -> Node | None:
        item_target = f"{target}[]"
        label = f"{self.label}: {target}"
        items: list[Field] = []
        for index, item in enumerate(raw):
            node = self.value(item, (*at, index), item_target, roots, depth + 1)
            if node is None:
                return None
            coerce = coercer_for(item_target) if node.leaf is not None else None
            items.append(field_of("", node, coerce, label))
        return Node(build=list_builder(items))

    def _loop(
        self, raw: dict[str, Any], at: Path, target: str, roots: Collection[str], depth: int
    ) -> Node | None:
        match = _LOOP.fullmatch(str(raw["for"]))
        if match is None:
            self.report.error((*at, "for"), "a loop reads `for: <name> in <list>`")
            return None
        var, source_text = match.groups()
        if var in MESSAGE_FIELDS or var in ("settings", "loop"):
            self.report.error((*at, "for"), f"loop variable {var!r} hides a message field")
            return None
        label = f"{self.label}: {target}"
        source = self.compiler.compile_text(
            source_text, self.report, (*at, "for"), roots, f"{label}: for"
        )
        limit = int(raw.get("limit", MAX_ITEMS))
        outer = self._loop_items
        if outer * limit > MAX_LOOP_ITEMS:
            self.report.error(
                (*at, "for"),
                f"{label}: nested loops may make {outer * limit:,} items per message "
                f"(at most {MAX_LOOP_ITEMS:,}); give the loops a smaller `limit`",
            )
            return None
        self._loop_items = outer * limit
        try:
            item = self.value(raw["item"], (*at, "item"), f"{target}[]", {*roots, var}, depth + 1)
        finally:
            self._loop_items = outer
        if source is None or item is None:
            return None
        item_target = f"{target}[]"
        coerce = coercer_for(item_target) if item.leaf is not None else None
        item_leaf, item_build = item.leaf, item.build

        def build(scope: Mapping[str, Any], warnings: list[str]) -> Any:
            sequence = source(scope)
            if not present(sequence):
                return ABSENT
            if not isinstance(sequence, list):
                raise EvalError("`for` needs a list")
            if len(sequence) > limit:
                warnings.append(f"{label}: {len(sequence)} items, only the first {limit} are sent")
                sequence = sequence[:limit]
            child = dict(scope)
            out = []
            for element in sequence:
                child[var] = element
                try:
                    if item_leaf is not None:
                        value = item_leaf(child)
                    else:
                        assert item_build is not None
                        value = item_build(child, warnings)
                    if not present(value):
                        continue
                    if coerce is not None:
                        value = coerce(value)
                except (EvalError, CoerceError) as exc:
                    warnings.append(f"{label}: {exc}; item dropped")
                    continue
                out.append(value)
            return out if out else ABSENT

        return Node(build=build)


def _leaf_runner(node: Node) -> Builder:
    """``node.run`` for a leaf node, without the dispatch."""
    leaf = node.leaf
    assert leaf is not None
    return lambda scope, warnings: leaf(scope)


def _absent(scope: Mapping[str, Any]) -> Any:
    return ABSENT


def field_of(key: str, node: Node, coerce: Coercer | None, label: str) -> Field:
    """The codegen field of an object's ``key`` computed by ``node``."""
    if node.leaf is not None:
        return Field(key, describe_node(node), None, coerce, label)
    return Field(key, None, node.build, coerce, label, node.fields)


def describe_node(node: Node) -> Leaf:
    """The codegen description of a leaf node."""
    assert node.leaf is not None
    return node.shape if node.shape is not None else describe(node.leaf)


def describe(value: Value) -> Leaf:
    """The codegen description of a compiled value."""
    path = getattr(value, "path_spec", None)
    if path is not None:
        return Leaf(path=path)
    spec = getattr(value, "filter_spec", None)
    if spec is not None:
        inner, function, args, absent_aware, pure = spec
        return Leaf(filtered=FilterStep(describe(inner), function, args, absent_aware, pure))
    constant = getattr(value, "constant", ABSENT)
    if constant is not ABSENT:
        return Leaf(constant=constant)
    return Leaf(function=value)

"""YAML reading that remembers where every key and item is.

:func:`load_yaml` returns plain data (dicts, lists, scalars) and a line table: for each
document path (tuple of keys and indexes) the 1-based line it starts on. Duplicate keys,
merge keys (``<<``), several documents and non-string keys are errors, reported with
their line like YAML syntax errors.

Aliases are bounded: a document whose aliases expand to more than
:data:`MAX_YAML_VALUES` values (a "billion laughs" bomb), an alias inside the value it
names (a recursive alias) and nesting deeper than :data:`MAX_YAML_DEPTH` are errors at
their line, found while the document is converted, before anything else reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

Path = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Values (mapping entries, list items, scalars) one document may expand to, aliases
#: counted every time they are used. The packaged mappings have about 1,500.
MAX_YAML_VALUES: Final = 100_000
#: Deepest nesting of mappings and lists.
MAX_YAML_DEPTH: Final = 64


class _Expansion:
    """How far the conversion of one document has gone; ``stopped`` ends it early."""

    def __init__(self) -> None:
        self.values = 0
        self.active: set[int] = set()  # ids of the nodes being converted (ancestors)
        self.stopped = False


@dataclass
class Located:
    """A parsed YAML document with its line table; ``errors`` holds (line, message)."""

    data: Any = None
    lines: dict[Path, int] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)


def load_yaml(text: str) -> Located:
    """Parse one YAML document, recording the line of every mapping key and list item.

    Never raises for bad input: syntax errors and structural errors are returned in
    ``errors`` with their line, and ``data`` is ``None`` when the text is unusable.
    """
    result = Located()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        # The context mark is where the broken construct starts (what to fix); the
        # problem mark is where the parser noticed, often lines later.
        start, noticed = exc.context_mark, exc.problem_mark
        mark = start or noticed
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        if start is not None and exc.context:
            problem = f"{problem} ({exc.context})"
        result.errors.append((line, f"YAML syntax error: {problem}"))
        return result
    except yaml.YAMLError as exc:
        result.errors.append((1, f"YAML error: {exc}"))
        return result
    except RecursionError:
        result.errors.append((1, f"YAML nested more than {MAX_YAML_DEPTH} levels"))
        return result
    finally:
        loader.dispose()
    if node is None:
        result.errors.append((1, "the file is empty"))
        return result
    result.lines[()] = node.start_mark.line + 1
    constructor = yaml.SafeLoader("")
    expansion = _Expansion()
    data = _convert(node, (), result, constructor, expansion)
    result.data = None if expansion.stopped else data  # a bound was hit: unusable
    return result


def _bounded(node: yaml.Node, path: Path, out: Located, expansion: _Expansion) -> bool:
    """Count ``node``; False (after recording why) when converting it would go past a
    bound: too many values, a node inside itself, too deep."""
    if expansion.stopped:
        return False
    expansion.values += 1
    line = node.start_mark.line + 1
    if id(node) in expansion.active:
        out.errors.append((line, "recursive YAML alias: an alias inside the value it names"))
    elif expansion.values > MAX_YAML_VALUES:
        out.errors.append(
            (line, f"YAML aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)")
        )
    elif len(path) > MAX_YAML_DEPTH:
        out.errors.append((line, f"YAML nested more than {MAX_YAML_DEPTH} levels"))
    else:
        return True
    expansion.stopped = True
    return False


def _convert(
    node: yaml.Node, path: Path, out: Located, constructor: yaml.SafeLoader, expansion: _Expansion
) -> Any:
    if not _bounded(node, path, out, expansion):
        return None
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        expansion.active.add(id(node))
        try:
            return _convert_collection(node, path, out, constructor, expansion)
        finally:
            expansion.active.discard(id(node))
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        out.errors.append((node.start_mark.line + 1, f"YAML value error: {exc}"))
        return None


def _convert_collection(
    node: yaml.MappingNode | yaml.SequenceNode,
    path: Path,
    out: Located,
    constructor: yaml.SafeLoader,
    expansion: _Expansion,
) -> Any:
    if isinstance(node, yaml.MappingNode):
        data: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                out.errors.append((line, "merge keys (<<) are not supported; use `defaults`"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                out.errors.append((line, "keys must be text, not a list or mapping"))
                continue
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                out.errors.append((line, f"keys must be text, not {key!r}"))
                continue
            if key in data:
                first = out.lines.get((*path, key), line)
                out.errors.append((line, f"duplicate key {key!r} (first defined on line {first})"))
                continue
            out.lines[(*path, key)] = line
            data[key] = _convert(value_node, (*path, key), out, constructor, expansion)
        return data
    items: list[Any] = []
    for index, item_node in enumerate(node.value):
        out.lines[(*path, index)] = item_node.start_mark.line + 1
        items.append(_convert(item_node, (*path, index), out, constructor, expansion))
    return items


_RULES_KEY = re.compile(r"rules\s*:\s*(#.*)?$")
_ANCHOR = re.compile(r"&([^\s,\[\]{}]+)")
_ALIAS = re.compile(r"\*([^\s,\[\]{}]+)")
_ITEM = re.compile(r"(\s*)-(\s|$)")


def load_yaml_recovering(text: str) -> Located:
    """:func:`load_yaml`, but a syntax error inside one item of the top-level ``rules``
    list does not hide the other rules: each item is then parsed again with the header
    and the good items before it (so their anchors resolve; line numbers kept), and the
    broken ones are left out, their errors reported. An alias whose anchor sits in a
    broken item is not reported again: the syntax error is reported once, at its line."""
    first = load_yaml(text)
    if first.data is not None or not first.errors:
        return first
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _RULES_KEY.match(line)), None)
    if start is None:
        return first
    items: list[int] = []
    indent: str | None = None
    end = len(lines)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ITEM.match(line)
        if indent is None:
            if match is None:
                return first
            indent = match.group(1)
        if match is not None and match.group(1) == indent:
            items.append(i)
        elif (indent == "" and not line[0].isspace()) or (indent and not line.startswith(indent)):
            end = i
            break
    if not items:
        return first

    def only(keep: range | set[int]) -> str:
        return "".join(line if i in keep else "\n" for i, line in enumerate(lines))

    header = load_yaml(only({*range(0, start), *range(end, len(lines))}))
    if header.errors or not isinstance(header.data, dict):
        return first
    result = Located(data=dict(header.data), lines=dict(header.lines))
    result.lines.setdefault((), 1)
    result.lines[("rules",)] = start + 1
    rules: list[Any] = []
    bounds = [*items, end]
    broken = False
    kept = {*range(0, start + 1), *range(end, len(lines))}  # header, rules: line, good items
    lost_anchors: set[str] = set()  # anchors defined in broken items
    for k in range(len(items)):
        chunk = range(bounds[k], bounds[k + 1])
        part = load_yaml(only(chunk))
        new_items = part.data if isinstance(part.data, list) else None
        prefix: Path = ()
        base = 0
        if new_items is None and any("undefined alias" in m for _, m in part.errors):
            # its anchors may be in the header or in good items: read it after them
            part = load_yaml(only(kept | set(chunk)))
            new_items = part.data.get("rules") if isinstance(part.data, dict) else None
            prefix, base = ("rules",), len(rules)
        if isinstance(new_items, list) and len(new_items) > base:
            for item_index in range(base, len(new_items)):
                index = len(rules)
                rules.append(new_items[item_index])
                for path, where in part.lines.items():
                    if path[: len(prefix) + 1] == (*prefix, item_index):
                        result.lines[("rules", index, *path[len(prefix) + 1 :])] = where
            # structural errors (duplicate keys...) of this item; the rest was reported
            result.errors.extend((line, m) for line, m in part.errors if line - 1 in chunk)
            kept |= set(chunk)
            continue
        broken = True
        chunk_text = "".join(lines[i] for i in chunk)
        aliases = set(_ALIAS.findall(chunk_text))
        if (
            part.errors
            and all("undefined alias" in m for _, m in part.errors)
            and (aliases & lost_anchors)
        ):
            continue  # follows from an earlier syntax error, already reported
        lost_anchors |= set(_ANCHOR.findall(chunk_text))
        last = max((i for i in chunk if lines[i].strip()), default=chunk.start) + 1
        result.errors.extend((min(max(line, chunk.start + 1), last), m) for line, m in part.errors)
    result.data["rules"] = rules
    if not broken:  # the syntax error was not inside one rule: report it as it is
        return first
    return result

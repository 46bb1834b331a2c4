"""Where a key of a YAML (or JSON) document is: its line, for located error messages."""

from __future__ import annotations

from collections.abc import Sequence

import yaml


def line_of(text: str, path: Sequence[str | int]) -> int | None:
    """The 1-based line of the node at ``path`` (mapping keys and list indexes) in
    ``text``, the nearest existing parent's line if the path ends early, or ``None`` when
    the text does not parse."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for part in path:
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line = key.start_mark.line + 1
                    found = value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            found = node.value[part]
            line = found.start_mark.line + 1
        if found is None:
            return line
        node = found
    return line


def located(file: object, text: str, path: Sequence[str | int], reason: str) -> str:
    """``"FILE:LINE: a.b[2].c: reason"`` (the line omitted when unknown)."""
    line = line_of(text, path)
    where = f"{file}:{line}" if line is not None else str(file)
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return f"{where}: {name}: {reason}" if name else f"{where}: {reason}"

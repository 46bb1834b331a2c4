"""Every hook spec is documented in docs/hooks.md and exercised by at least one test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from cdp_tiktok import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_DOC = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
TEST_SOURCES = {
    path.name: path.read_text(encoding="utf-8")
    for path in (ROOT / "tests").glob("test_*.py")
    if path.name != Path(__file__).name
}


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_hook_has_a_documentation_entry(name: str) -> None:
    assert re.search(rf"^### `{name}\(", HOOKS_DOC, re.MULTILINE), (
        f"{name} has no '### `{name}(...)`' entry in docs/hooks.md"
    )


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_hook_is_exercised_by_a_test(name: str) -> None:
    users = [file for file, text in TEST_SOURCES.items() if name in text]
    assert users, f"no test mentions {name}"


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_hook_spec_has_a_docstring_and_no_defaults(name: str) -> None:
    spec = getattr(hookspecs, name)
    assert inspect.getdoc(spec), f"{name} has no docstring"
    for parameter in inspect.signature(spec).parameters.values():
        assert parameter.default is inspect.Parameter.empty, f"{name}({parameter.name}=...)"


def test_every_documented_hook_exists() -> None:
    documented = set(re.findall(r"^### `(cdp_\w+)\(", HOOKS_DOC, re.MULTILINE))
    assert documented == set(hookspecs.HOOK_NAMES)

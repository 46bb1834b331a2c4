"""Every documentation snippet marked runnable runs, offline, against the local sandbox.

A fenced block is runnable when the line right before its opening fence is
``<!-- runnable -->`` (see docs/contributing.md). ``bash``/``sh``/``shell`` blocks run
with ``bash -e -o pipefail``, ``console`` blocks run their ``$ `` lines (the rest is
sample output), ``python`` blocks run with this interpreter. Each runs in a fresh
directory holding ``examples/``, ``mappings/``, ``events.jsonl`` (the example stream) and
``tiktok.yaml`` (settings for the sandbox), with ``CDP_TIKTOK_*`` variables pointing at a
sandbox started for the test, and must exit 0 within :data:`TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, SANDBOX_PIXEL_CODE

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "mappings" / "README.md",
]
MARKER = "<!-- runnable -->"
TIMEOUT_SECONDS = 120
SHELLS = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Snippet:
    """One runnable block: where it is, its language and its text."""

    path: Path
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def runnable_snippets(path: Path) -> Iterator[Snippet]:
    """The blocks of ``path`` whose opening fence follows the runnable marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith(opening["fence"]):
            end += 1
        if index > 0 and lines[index - 1].strip() == MARKER:
            text = "\n".join(lines[index + 1 : end]) + "\n"
            yield Snippet(path, index + 1, opening["lang"], text)
        index = end + 1


SNIPPETS = [snippet for path in DOCUMENTS for snippet in runnable_snippets(path)]


def _script(snippet: Snippet) -> list[str]:
    if snippet.lang == "python":
        return [sys.executable, "-c", snippet.text]
    if snippet.lang not in SHELLS:
        raise AssertionError(f"{snippet.id}: a runnable block must be one of {SHELLS} or python")
    text = snippet.text
    if snippet.lang == "console":
        commands = [line[2:] for line in text.splitlines() if line.startswith("$ ")]
        assert commands, f"{snippet.id}: a console block needs '$ ' lines"
        text = "\n".join(commands) + "\n"
    return ["bash", "-e", "-o", "pipefail", "-c", text]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as server:
        yield server


def test_markers_are_found_and_each_precedes_a_fence() -> None:
    assert len(SNIPPETS) >= 10, [s.id for s in SNIPPETS]
    for path in DOCUMENTS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip() == MARKER:
                following = lines[number] if number < len(lines) else ""
                assert FENCE.match(following), f"{path}:{number}: marker not before a fence"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.id)
def test_runnable_snippet_runs(snippet: Snippet, sandbox: SandboxServer, tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "examples",
        tmp_path / "examples",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
    )
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    shutil.copy(ROOT / "examples" / "events.jsonl", tmp_path / "events.jsonl")
    (tmp_path / "tiktok.yaml").write_text(
        f"pixel_code: {SANDBOX_PIXEL_CODE}\naccess_token: {SANDBOX_ACCESS_TOKEN}\n"
        f"endpoint: {sandbox.url}\noutbox: sqlite:///outbox.db\nidentity: sqlite:///identity.db\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_TIKTOK_")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        CDP_TIKTOK_ENDPOINT=sandbox.url,
        CDP_TIKTOK_ACCESS_TOKEN=SANDBOX_ACCESS_TOKEN,
        CDP_TIKTOK_PIXEL_CODE=SANDBOX_PIXEL_CODE,
        CDP_TIKTOK_OUTBOX="sqlite:///outbox.db",
        CDP_TIKTOK_IDENTITY="sqlite:///identity.db",
    )
    result = subprocess.run(
        _script(snippet),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"{snippet.id} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr

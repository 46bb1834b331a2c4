"""The README's main command ends without a warning on any date, with a known progress total."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main

ROOT = Path(__file__).resolve().parent.parent
MAIN_COMMAND = "cdp-tiktok send examples/events.jsonl --sandbox"


@pytest.fixture
def example_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "events.jsonl", tmp_path / "examples" / "events.jsonl")
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CDP_TIKTOK_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_readme_main_command_prints_no_warning(example_dir: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MAIN_COMMAND in readme
    result = CliRunner().invoke(main, shlex.split(MAIN_COMMAND)[1:])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert warnings == [], result.stderr


def test_example_messages_take_the_time_they_are_read() -> None:
    """No fixed timestamps: the example's events are fresh on any date."""
    lines = (ROOT / "examples" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 100
    for line in lines:
        message = json.loads(line)
        assert not {"timestamp", "originalTimestamp", "sentAt"} & set(message), message


def test_progress_total_is_known_for_files(example_dir: Path) -> None:
    live = {"TTY_INTERACTIVE": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "120"}
    result = CliRunner().invoke(main, shlex.split(MAIN_COMMAND)[1:], env=live)
    assert result.exit_code == 0, result.output
    # the file's size is the total (the last line says it whatever the refresh timing)
    assert "reading" in result.stderr and " kB" in result.stderr
    assert "None" not in result.stderr

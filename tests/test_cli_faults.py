"""Every CLI command, on a table of faults: one located sentence, exit 2 or 1, no traceback.

The table holds what a user meets in the field: bad settings from each source (flag,
environment, settings file with its line), store files that are damaged, truncated, in a
read-only directory or on a full disk, a plugin that fails to load. A new command in
``COMMANDS`` must get a row in :data:`INVOCATIONS` (a test enforces it), so it is run on
the same faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cdp_tiktok.cli import COMMANDS, main
from cdp_tiktok.cli.errors import INTERNAL_ERROR
from tests.conftest import require_service

MESSAGES = [
    {
        "type": "identify",
        "userId": "u1",
        "messageId": "m-identify",
        "traits": {"email": "ada@example.com"},
        "timestamp": "2026-01-01T00:00:00Z",
    },
    {
        "type": "track",
        "userId": "u1",
        "event": "Order Completed",
        "messageId": "m-order",
        "properties": {"revenue": 10, "currency": "USD"},
        "context": {"page": {"url": "https://shop.example/checkout"}},
    },
]

INVOCATIONS: dict[str, list[str]] = {
    "check": ["check", "events.jsonl"],
    "plugins": ["plugins"],
    "validate": ["validate"],
    "map": ["map", "events.jsonl", "--quiet"],
    "identity": ["identity", "forget", "--user-id", "u1"],
    "sandbox": ["sandbox", "--port", "0"],
    "send": ["send", "events.jsonl", "--sandbox"],
    "dlq": ["dlq", "list"],
    "conformance": ["conformance"],
    "init": ["init", "scaffold"],
    "report": ["report", "events.jsonl"],
    "outbox": ["outbox", "status"],
    "worker": ["worker"],
    "serve": ["serve", "--port", "0"],
}
"""A normal invocation of each command (run in a directory holding events.jsonl). ``sandbox``,
``worker`` and ``serve`` run until stopped: every fault they are run on must stop them first."""
COMMAND_ENV: dict[str, dict[str, str]] = {
    "worker": {"CDP_TIKTOK_PIXEL_CODE": "C1", "CDP_TIKTOK_ACCESS_TOKEN": "token"},
    "serve": {
        "CDP_TIKTOK_PIXEL_CODE": "C1",
        "CDP_TIKTOK_ACCESS_TOKEN": "token",
        "CDP_TIKTOK_WRITE_KEYS": "key",
    },
}
"""Variables a command needs besides the fault (the worker refuses to start without them)."""
CLI = [sys.executable, "-c", "from cdp_tiktok.cli import main; main()"]
"""The command line in a child process (for faults that need a real process)."""

SETTINGS_READERS = (
    *("validate", "map", "send", "dlq", "identity", "conformance", "report", "outbox", "worker"),
    "serve",
)
"""Commands that read the settings (environment, and the settings file where they take one)."""
SETTINGS_FILE_READERS = (
    "validate",
    "map",
    "send",
    "dlq",
    "conformance",
    "report",
    "outbox",
    "worker",
    "serve",
)
MAPPERS = ("validate", "map", "send", "conformance", "report")
"""Commands with the mapping options (--default-phone-region, --event-source...)."""
HOSTS = ("plugins", "validate", "map", "send", "conformance", "report")
"""Commands that load plugins."""
OUTBOX_USERS = ("send", "dlq", "outbox", "worker", "serve")
INPUT_READERS = ("check", "map", "send", "report")
IDENTITY_USERS = ("send", "identity")


@dataclass(frozen=True)
class Fault:
    """One fault: how to set it up, which commands must refuse it, and what they say."""

    name: str
    commands: tuple[str, ...]
    exit_code: int
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    files: dict[str, str | bytes] = field(default_factory=dict)
    input: str | None = None
    """Replaces the input file ``events.jsonl`` of the invocation."""


def _truncated_outbox(directory: Path) -> bytes:
    """The first half of a real outbox file holding delivered events."""
    from cdp_tiktok.backends import open_outbox
    from cdp_tiktok.events import BatchKey, OutgoingEvent

    path = directory / "whole.db"
    outbox = open_outbox(f"sqlite:///{path}")
    key = BatchKey("TikTok", "web", "C1", None)
    outbox.enqueue(
        [OutgoingEvent(key, {"event": "Purchase", "event_id": str(i)}) for i in range(3000)]
    )
    outbox.close()
    data = path.read_bytes()
    path.unlink()
    return data[: len(data) // 2]


FAULTS = [
    Fault(
        "event_source from the environment",
        SETTINGS_READERS,
        2,
        ("event_source", "CDP_TIKTOK_EVENT_SOURCE", "'bogus'"),
        env={"CDP_TIKTOK_EVENT_SOURCE": "bogus"},
    ),
    Fault(
        "event_source from a settings file",
        SETTINGS_FILE_READERS,
        2,
        ("event_source", "bad.yaml:2", "'nowhere'"),
        env={"CDP_TIKTOK_SETTINGS": "bad.yaml"},
        files={"bad.yaml": "pixel_code: C1\nevent_source: nowhere\n"},
    ),
    Fault(
        "unknown --default-phone-region",
        MAPPERS,
        2,
        ("default_phone_region", "--default-phone-region", "'ZZ'"),
        args=("--default-phone-region", "ZZ"),
    ),
    Fault(
        "unknown default_phone_region from the environment",
        SETTINGS_READERS,
        2,
        ("default_phone_region", "CDP_TIKTOK_DEFAULT_PHONE_REGION"),
        env={"CDP_TIKTOK_DEFAULT_PHONE_REGION": "XX"},
    ),
    Fault(
        "timeout_seconds NaN in a settings file",
        SETTINGS_FILE_READERS,
        2,
        ("timeout_seconds", "bad.yaml:1", "finite"),
        env={"CDP_TIKTOK_SETTINGS": "bad.yaml"},
        files={"bad.yaml": "timeout_seconds: .nan\n"},
    ),
    Fault(
        "timeout_seconds negative from the environment",
        SETTINGS_READERS,
        2,
        ("timeout_seconds", "CDP_TIKTOK_TIMEOUT_SECONDS", "greater than 0"),
        env={"CDP_TIKTOK_TIMEOUT_SECONDS": "-5"},
    ),
    Fault(
        "max_attempts 0 in a JSON settings file",
        SETTINGS_FILE_READERS,
        2,
        ("max_attempts", "bad.json", "at least 1"),
        env={"CDP_TIKTOK_SETTINGS": "bad.json"},
        files={"bad.json": json.dumps({"max_attempts": 0})},
    ),
    Fault(
        "outbox file that is not a database",
        OUTBOX_USERS,
        1,
        ("outbox", "garbage.db", "damaged"),
        env={"CDP_TIKTOK_OUTBOX": "sqlite:///garbage.db"},
        args=("--outbox", "sqlite:///garbage.db"),
        files={"garbage.db": b"this is not SQLite" * 100},
    ),
    Fault(
        "truncated outbox file",
        OUTBOX_USERS,
        1,
        ("outbox", "half.db", "damaged"),
        env={"CDP_TIKTOK_OUTBOX": "sqlite:///half.db"},
        args=("--outbox", "sqlite:///half.db"),
        files={"half.db": b"<truncated outbox>"},
    ),
    Fault(
        "identity file that is not a database",
        IDENTITY_USERS,
        1,
        ("identity store", "garbage.db", "damaged"),
        env={"CDP_TIKTOK_IDENTITY": "sqlite:///garbage.db"},
        args=("--identity", "sqlite:///garbage.db"),
        files={"garbage.db": b"this is not SQLite" * 100},
    ),
    Fault(
        "unsupported outbox URL",
        OUTBOX_USERS,
        2,
        ("unsupported outbox url 'nosuch://x'",),
        env={"CDP_TIKTOK_OUTBOX": "nosuch://x"},
        args=("--outbox", "nosuch://x"),
    ),
    Fault(
        "mapping directory that does not exist",
        MAPPERS,
        2,
        ("mappings (from CDP_TIKTOK_MAPPINGS)", "'gone' is not a directory"),
        env={"CDP_TIKTOK_MAPPINGS": "gone"},
    ),
    Fault(
        "input that is a directory",
        INPUT_READERS,
        2,
        ("adir",),
        files={"adir/keep": ""},
        input="adir",
    ),
    Fault(
        "init into a directory that is not empty",
        ("init",),
        2,
        ("scaffold already exists and is not empty",),
        files={"scaffold/notes.txt": "mine"},
    ),
    Fault(
        "a plugin that fails to load",
        HOSTS,
        2,
        ("plugin 'broken'", "failed to load"),
        files={
            "plugins/broken_plugin-1.0.dist-info/METADATA": (
                "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n"
            ),
            "plugins/broken_plugin-1.0.dist-info/entry_points.txt": (
                "[cdp_tiktok]\nbroken = no_such_module_anywhere:plugin\n"
            ),
        },
    ),
]
"""Faults every listed command must refuse. ``args`` are given only to commands that take
them as options of their own (``--outbox``/``--identity`` of send); others get ``env``."""

OPTION_OWNERS = {"--outbox": ("send",), "--identity": ("send",)}
"""Which commands take a fault's ``args`` (other commands get only its ``env``)."""


def _argv(command: str, fault: Fault) -> list[str]:
    argv = list(INVOCATIONS[command])
    if fault.input is not None:
        argv = [fault.input if arg == "events.jsonl" else arg for arg in argv]
    args = list(fault.args)
    if args and args[0] in OPTION_OWNERS and command not in OPTION_OWNERS[args[0]]:
        args = []
    if command == "dlq" and "CDP_TIKTOK_OUTBOX" in fault.env:
        argv = ["dlq", "--outbox", fault.env["CDP_TIKTOK_OUTBOX"], "list"]
    if command == "identity" and "CDP_TIKTOK_IDENTITY" in fault.env:
        argv = [*argv, "--store", fault.env["CDP_TIKTOK_IDENTITY"]]
    return [*argv, *args]


def assert_one_located_sentence(result: Result, exit_code: int, says: tuple[str, ...]) -> None:
    """Exit status ``exit_code``, no traceback anywhere, and exactly one ``Error:`` line on
    standard error naming every fragment of ``says``."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == exit_code, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    for fragment in says:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("CDP_TIKTOK_"):
            monkeypatch.delenv(name)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(m) + "\n" for m in MESSAGES))
    return tmp_path


def test_every_command_has_a_row() -> None:
    assert set(INVOCATIONS) == set(COMMANDS), "add a row for the new command to INVOCATIONS"
    for fault in FAULTS:
        assert set(fault.commands) <= set(COMMANDS), fault.name


@pytest.mark.parametrize(
    ("command", "fault"),
    [(command, fault) for fault in FAULTS for command in fault.commands],
    ids=lambda value: value.name if isinstance(value, Fault) else value,
)
def test_fault_is_one_located_sentence(
    command: str, fault: Fault, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, content in fault.files.items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content == b"<truncated outbox>":
            content = _truncated_outbox(workdir)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    if (workdir / "plugins").is_dir():
        monkeypatch.syspath_prepend(str(workdir / "plugins"))
    env = {**COMMAND_ENV.get(command, {}), **fault.env}
    result = CliRunner().invoke(main, _argv(command, fault), env=env)
    assert_one_located_sentence(result, fault.exit_code, fault.says)


def test_every_command_runs_without_the_faults(workdir: Path) -> None:
    """The invocations of the table succeed on their own, so the faults are what fails."""
    runner = CliRunner()
    for command, argv in INVOCATIONS.items():
        if command in ("sandbox", "worker", "serve", "dlq", "outbox"):
            continue  # sandbox and worker serve until stopped; dlq/outbox need send's outbox
        result = runner.invoke(main, argv)
        assert result.exit_code == 0, (command, result.output)
    for argv in (["dlq", "--sandbox", "list"], ["outbox", "--sandbox", "status"]):
        result = runner.invoke(main, argv)
        assert result.exit_code == 0, (argv, result.output)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sandbox", "--port", "99999"], ("--port", "99999")),
        (["sandbox", "--host", "203.0.113.254"], ("cannot listen on 203.0.113.254",)),
    ],
)
def test_sandbox_faults(argv: list[str], says: tuple[str, ...], workdir: Path) -> None:
    result = CliRunner().invoke(main, argv)
    assert_one_located_sentence(result, 2 if "99999" in argv else 1, says)


def test_unexpected_error_is_one_sentence_with_how_to_report(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(COMMANDS, "explode", "tests.helpers_cli:explode")
    result = CliRunner().invoke(main, ["explode"])
    assert_one_located_sentence(
        result, INTERNAL_ERROR, ("unexpected ZeroDivisionError", "--debug", "CDP_TIKTOK_DEBUG=1")
    )
    debug = CliRunner().invoke(main, ["--debug", "explode"])
    assert isinstance(debug.exception, ZeroDivisionError)
    from_env = CliRunner().invoke(main, ["explode"], env={"CDP_TIKTOK_DEBUG": "1"})
    assert isinstance(from_env.exception, ZeroDivisionError)


# --- files on filesystems that refuse writes (real mounts) ------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[None]:
    path.mkdir()
    mounted = (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    require_service(mounted, f"cannot mount a tmpfs ({options}) at {path}: needs root")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def read_only_dir(workdir: Path) -> Iterator[Path]:
    """A directory nothing can be written to: a read-only tmpfs as root, else chmod 555."""
    path = workdir / "ro"
    if os.geteuid() != 0:
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with _tmpfs(path, "size=100k,ro"):
        yield path


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--outbox", ("outbox ro/", "writable")),
        ("--identity", ("identity store ro/", "writable")),
    ],
)
def test_store_in_read_only_directory(
    option: str, says: tuple[str, ...], read_only_dir: Path
) -> None:
    url = "sqlite:///ro/store.db"
    result = CliRunner().invoke(main, ["send", "events.jsonl", "--sandbox", option, url])
    assert_one_located_sentence(result, 1, says)
    scaffold = CliRunner().invoke(main, ["init", "ro/scaffold"])
    assert_one_located_sentence(scaffold, 1, ("cannot create ro/scaffold",))
    deeper = CliRunner().invoke(
        main, ["send", "events.jsonl", "--sandbox", option, "sqlite:///ro/a/b.db"]
    )
    assert_one_located_sentence(deeper, 1, ("ro/a/b.db", "not writable"))


@pytest.fixture
def small_disk(workdir: Path) -> Iterator[Path]:
    path = workdir / "disk"
    with _tmpfs(path, "size=400k"):
        yield path


def _fill(directory: Path, leave: int) -> Path:
    """Fill ``directory``'s filesystem until fewer than ``leave`` bytes are free."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        while shutil.disk_usage(directory).free > leave:
            try:
                out.write(b"\0" * 4096)
                out.flush()
            except OSError:
                break
    return filler


def test_full_disk_names_the_file_and_keeps_what_was_stored(small_disk: Path) -> None:
    from cdp_tiktok.backends import open_outbox

    stores = ["--outbox", "sqlite:///disk/out.db", "--identity", "sqlite:///disk/id.db"]
    first = subprocess.run(
        [*CLI, "send", "events.jsonl", "--sandbox", *stores],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    before = open_outbox("sqlite:///disk/out.db")
    delivered = before.stats().delivered
    before.close()
    assert delivered == 1
    big = Path("big.jsonl")
    with big.open("w") as out:
        for i in range(3000):
            message = {**MESSAGES[1], "messageId": f"m-{i}", "userId": f"user-{i}"}
            out.write(json.dumps(message) + "\n")
            out.write(
                json.dumps({**MESSAGES[0], "messageId": f"i-{i}", "userId": f"user-{i}"}) + "\n"
            )
    filler = _fill(small_disk, leave=150_000)
    second = subprocess.run(
        [*CLI, "send", str(big), "--sandbox", *stores],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = second.stdout + second.stderr
    assert "Traceback" not in output, output
    assert second.returncode == 1, output
    errors = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, second.stderr
    assert "disk/" in errors[0] and "disk is full" in errors[0], errors[0]
    filler.unlink()
    after = open_outbox("sqlite:///disk/out.db")
    try:
        stats = after.stats()
        assert stats.delivered >= delivered  # nothing acknowledged was lost
        assert stats.dead == 0
    finally:
        after.close()
    with contextlib.closing(sqlite3.connect("disk/out.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

"""Opening the outbox from the command line: which url, and errors as one sentence."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import psycopg

from cdp_tiktok.cli.options import SANDBOX_OUTBOX
from cdp_tiktok.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox

F = TypeVar("F", bound=Callable[..., Any])

STORE_ERRORS: tuple[type[Exception], ...] = (OSError, sqlite3.Error, RuntimeError, psycopg.Error)
"""What opening or using a store can raise besides bad input (shown as one sentence)."""


def safe_url(url: str) -> str:
    """A store url as it may be printed (a PostgreSQL url without credentials)."""
    if url.startswith(("postgresql:", "postgres:")):
        from cdp_tiktok.postgres import safe_url as shown

        return shown(url)
    return url


OUTBOX_OPTIONS = [
    click.option(
        "--outbox",
        "url",
        metavar="URL",
        help="Outbox URL (sqlite:///path.db, postgresql://user@host/db, memory://). "
        "Default: the outbox setting (env CDP_TIKTOK_OUTBOX).",
    ),
    click.option(
        "--settings",
        "settings_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar="CDP_TIKTOK_SETTINGS",
        help="Settings file to read the outbox URL from. Env: CDP_TIKTOK_SETTINGS.",
    ),
    click.option("--sandbox", is_flag=True, help="Act on the outbox of `send --sandbox`."),
]


def outbox_options(function: F) -> F:
    """Decorate a command group with ``--outbox``, ``--settings`` and ``--sandbox``; the
    group receives ``url``, ``settings_file`` and ``sandbox`` (see :func:`outbox_url`)."""
    for option in reversed(OUTBOX_OPTIONS):
        function = option(function)
    return function


def outbox_url(url: str | None, settings_file: Path | None, sandbox: bool) -> str:
    """The outbox a command acts on: ``--outbox``, else ``--sandbox``'s, else the setting."""
    if url is not None:
        if sandbox:
            raise click.UsageError("give --outbox or --sandbox, not both")
        return url
    if sandbox:
        return SANDBOX_OUTBOX
    try:
        return load_settings(file=settings_file).outbox
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def opened_outbox(url: str, *, must_exist: bool = True) -> Iterator[Outbox]:
    """The outbox at ``url``, closed on exit; a missing SQLite file (``must_exist``), an
    unknown url or an unreachable database is one located sentence, never a traceback."""
    from cdp_tiktok.backends import open_outbox
    from cdp_tiktok.delivery.sqlite_outbox import sqlite_path

    path = sqlite_path(url)
    if must_exist and path is not None and not path.exists():
        raise click.ClickException(
            f"no outbox at {path} (from {url}); nothing was ever enqueued there. "
            "Pass --outbox or set CDP_TIKTOK_OUTBOX."
        )
    try:
        outbox = open_outbox(url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except STORE_ERRORS as exc:
        raise click.ClickException(f"cannot open the outbox {safe_url(url)}: {exc}") from None
    try:
        yield outbox
    finally:
        outbox.close()

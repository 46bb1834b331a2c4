"""``cdp-tiktok check``: validate a file of Segment messages without sending anything."""

from __future__ import annotations

import gzip
from collections import Counter
from typing import IO

import click
from rich.console import Console
from rich.table import Table

from cdp_tiktok.jsonstream import iter_messages
from cdp_tiktok.messages import MESSAGE_TYPES, MessageError

_GZIP_MAGIC = b"\x1f\x8b"


def _open_input(stream: IO[bytes], name: str) -> IO[bytes] | gzip.GzipFile:
    """``stream`` itself, or a gzip reader over it for ``.gz`` names or gzip bytes."""
    peek = getattr(stream, "peek", None)
    head = peek(2)[:2] if callable(peek) else b""
    if name.endswith(".gz") or head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=stream, mode="rb")
    return stream


def _summary(valid: Counter[str], invalid: int) -> Table:
    table = Table(title="Segment messages")
    table.add_column("type")
    table.add_column("messages", justify="right")
    for kind in MESSAGE_TYPES:
        if valid[kind]:
            table.add_row(kind, str(valid[kind]))
    table.add_section()
    table.add_row("valid", str(sum(valid.values())), style="green")
    table.add_row("invalid", str(invalid), style="red" if invalid else None)
    return table


@click.command()
@click.argument("file", type=click.File("rb"))
def check(file: IO[bytes]) -> None:
    """Validate the Segment messages in FILE ('-' reads standard input).

    FILE holds one JSON object, a JSON array, JSON Lines, or Segment batch envelopes;
    gzip input (a .gz name or gzip bytes) is read transparently. Every invalid message is
    printed as FILE:LINE: /pointer: reason, then a summary by type. Exits 1 when any
    message is invalid, 0 otherwise.
    """
    name = getattr(file, "name", "-")
    source = "<stdin>" if name in ("-", "<stdin>") else str(name)
    valid: Counter[str] = Counter()
    invalid = 0
    stream = _open_input(file, source)
    try:
        for _, result in iter_messages(stream, source):
            if isinstance(result, MessageError):
                invalid += 1
                click.echo(str(result))
            else:
                valid[str(result["type"])] += 1
    except (OSError, EOFError) as error:  # unreadable or corrupt (e.g. truncated gzip)
        click.echo(f"Error: cannot read {source}: {error}", err=True)
        click.get_current_context().exit(2)
    Console(highlight=False).print(_summary(valid, invalid))
    click.get_current_context().exit(1 if invalid else 0)

"""``cdp-tiktok check``: validate a file of Segment messages without sending anything."""

from __future__ import annotations

from collections import Counter
from typing import IO

import click
from rich.console import Console
from rich.table import Table

from cdp_tiktok.jsonstream import MAX_MESSAGE_BYTES, iter_messages
from cdp_tiktok.messages import MESSAGE_TYPES, MessageError


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
@click.option(
    "--max-message-bytes",
    type=click.IntRange(min=1024),
    default=MAX_MESSAGE_BYTES,
    envvar="CDP_TIKTOK_MAX_MESSAGE_BYTES",
    show_default=True,
    help="Refuse a line, array element or JSON value longer than this. "
    "Env: CDP_TIKTOK_MAX_MESSAGE_BYTES.",
)
def check(file: IO[bytes], max_message_bytes: int) -> None:
    """Validate the Segment messages in FILE ('-' reads standard input).

    FILE holds one JSON object, a JSON array, JSON Lines, or Segment batch envelopes;
    gzip input (recognised by its bytes) is read transparently. Every invalid message is
    printed as FILE:LINE: /pointer: reason, then a summary by type. Exits 1 when any
    message is invalid, 0 otherwise.
    """
    name = getattr(file, "name", "-")
    source = "<stdin>" if name in ("-", "<stdin>") else str(name)
    valid: Counter[str] = Counter()
    invalid = 0
    try:
        for _, result in iter_messages(file, source, max_message_bytes=max_message_bytes):
            if isinstance(result, MessageError):
                invalid += 1
                click.echo(str(result))
            else:
                valid[str(result["type"])] += 1
    except OSError as error:  # unreadable (a corrupt gzip is a located invalid message)
        click.echo(f"Error: cannot read {source}: {error}", err=True)
        click.get_current_context().exit(2)
    Console(highlight=False).print(_summary(valid, invalid))
    click.get_current_context().exit(1 if invalid else 0)

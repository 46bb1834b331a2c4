"""``cdp-tiktok dlq``: list, show, replay and purge the outbox's dead letters."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from cdp_tiktok.cli.stores import opened_outbox, outbox_options, outbox_url
from cdp_tiktok.delivery.outbox import DEDUP_WINDOW_SECONDS, DeadLetter, Outbox

_COLUMNS = ("ID", "DEAD AT", "EVENT ID", "EVENT", "CODE", "REASON")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_code(letter: DeadLetter) -> str:
    if not letter.history:
        return "-"
    last = letter.history[-1]
    if last.code is not None:
        return str(last.code)
    return f"http {last.http_status}" if last.http_status is not None else "-"


@contextmanager
def _opened(ctx: click.Context) -> Iterator[Outbox]:
    with opened_outbox(ctx.obj) as outbox:
        yield outbox


def _targets(outbox: Outbox, ids: Sequence[int], every: bool) -> list[DeadLetter]:
    """The dead letters named by ``ids`` or ``--all``; unknown ids are an error."""
    if every == bool(ids):
        raise click.UsageError("give dead letter ids or --all (not both)")
    if every:
        return list(outbox.dead_letters())
    letters = {i: outbox.get_dead_letter(i) for i in dict.fromkeys(ids)}
    missing = [str(i) for i, letter in letters.items() if letter is None]
    if missing:
        raise click.ClickException(f"no dead letter with id {', '.join(missing)}; nothing changed")
    return [letter for letter in letters.values() if letter is not None]


@click.group()
@outbox_options
@click.pass_context
def dlq(ctx: click.Context, url: str | None, settings_file: Path | None, sandbox: bool) -> None:
    """Inspect and act on dead letters: events the outbox will not send again by itself."""
    ctx.obj = outbox_url(url, settings_file, sandbox)


@dlq.command("list")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@click.pass_context
def list_command(ctx: click.Context, limit: int | None) -> None:
    """One line per dead letter, oldest first: id, time, event_id, event, last code, reason."""
    with _opened(ctx) as outbox:
        rows = [
            (
                str(d.id),
                _when(d.dead_at),
                d.event_id or "-",
                str(d.data.get("event", "-")),
                _last_code(d),
                d.reason,
            )
            for d in outbox.dead_letters(limit=limit)
        ]
        total = outbox.stats().dead
    if not rows:
        click.echo("No dead letters.")
        return
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS) - 1)]
    for row in [_COLUMNS, *rows]:
        click.echo("  ".join([*(v.ljust(w) for v, w in zip(row, widths, strict=False)), row[-1]]))
    shown = f"{len(rows)} of {total}" if len(rows) < total else str(total)
    click.echo(f"\n{shown} dead letter(s). Details: cdp-tiktok dlq show ID")


@dlq.command()
@click.argument("id", type=int)
@click.pass_context
def show(ctx: click.Context, id: int) -> None:
    """Print one dead letter: where it was going, the event JSON and every attempt."""
    with _opened(ctx) as outbox:
        letter = outbox.get_dead_letter(id)
    if letter is None:
        raise click.ClickException(f"no dead letter with id {id}")
    key = letter.key
    click.echo(f"Dead letter {letter.id}")
    click.echo(f"  reason:       {letter.reason}")
    click.echo(f"  event_id:     {letter.event_id or '-'}")
    click.echo(f"  destination:  {key.destination}")
    click.echo(f"  event source: {key.event_source} {key.event_source_id}")
    if key.test_event_code:
        click.echo(f"  test code:    {key.test_event_code}")
    click.echo(f"  enqueued at:  {_when(letter.enqueued_at)}")
    click.echo(f"  dead at:      {_when(letter.dead_at)}")
    click.echo("Event:")
    click.echo(json.dumps(letter.data, indent=2, ensure_ascii=False, sort_keys=True))
    click.echo(f"Attempts ({len(letter.history)}):")
    for n, attempt in enumerate(letter.history, 1):
        click.echo(
            f"  {n}. {_when(attempt.at)}  {attempt.outcome}"
            f"  code={attempt.code if attempt.code is not None else '-'}"
            f"  http={attempt.http_status if attempt.http_status is not None else '-'}"
            f"  request_id={attempt.request_id or '-'}"
        )
        if attempt.message:
            click.echo(f"     message: {attempt.message}")


@dlq.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Replay every dead letter.")
@click.pass_context
def replay(ctx: click.Context, ids: tuple[int, ...], every: bool) -> None:
    """Move dead letters back to pending (attempts reset, history kept).

    Nothing is sent now: the next ``cdp-tiktok send`` or worker run delivers them.
    """
    now = time.time()
    with _opened(ctx) as outbox:
        letters = _targets(outbox, ids, every)
        for letter in letters:
            event_time = letter.data.get("event_time")
            if isinstance(event_time, int | float) and now - event_time > DEDUP_WINDOW_SECONDS:
                days = (now - event_time) / 86400
                click.echo(
                    f"warning: dead letter {letter.id} (event_id {letter.event_id or '-'}): "
                    f"event_time is {days:.1f} days old. TikTok de-duplicates on event_id only "
                    "within 48 hours, so if this event did reach TikTok before, it may be "
                    "counted twice.",
                    err=True,
                )
        count = outbox.replay([letter.id for letter in letters], now=now) if letters else 0
    click.echo(
        f"Replayed {count} dead letter(s) to pending. Nothing was sent yet: the next "
        "`cdp-tiktok send` or worker run delivers them."
    )


@dlq.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Purge every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, ids: tuple[int, ...], every: bool, yes: bool) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    with _opened(ctx) as outbox:
        letters = _targets(outbox, ids, every)
        if not letters:
            click.echo("No dead letters.")
            return
        if not yes:
            click.confirm(
                f"Delete {len(letters)} dead letter(s) for good? They cannot be replayed after.",
                abort=True,
            )
        count = outbox.purge([letter.id for letter in letters])
    click.echo(f"Purged {count} dead letter(s).")

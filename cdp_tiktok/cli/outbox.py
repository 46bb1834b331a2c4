"""``cdp-tiktok outbox``: see what the outbox holds, deliver it, release or purge a
stopped destination, migrate its schema."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cdp_tiktok.cli.stores import opened_outbox, outbox_options, outbox_url, safe_url
from cdp_tiktok.cli.worker import delivery_options, delivery_settings_from
from cdp_tiktok.delivery.outbox import DestinationStatus, RecordState

STATES = [state for state in RecordState if state is not RecordState.DELIVERED]
WAITING = (RecordState.PENDING, RecordState.RETRY_SCHEDULED, RecordState.STOPPED)
"""The states ``purge`` and ``release`` act on."""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _as_json(row: DestinationStatus, now: float) -> dict[str, Any]:
    oldest = row.oldest_enqueued_at
    return {
        "destination": row.destination,
        **{str(state): row.counts[state] for state in STATES},
        "oldest_pending_age_seconds": None if oldest is None else round(now - oldest, 3),
        "stopped_reason": row.stopped_reason,
        "stopped_at": row.stopped_at,
    }


@click.group()
@outbox_options
@click.pass_context
def outbox(ctx: click.Context, url: str | None, settings_file: Path | None, sandbox: bool) -> None:
    """Inspect and act on the outbox: what waits, why, and for whom."""
    ctx.obj = {"url": outbox_url(url, settings_file, sandbox), "sandbox": sandbox}


@outbox.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per destination.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per destination: pending, retry_scheduled, leased, stopped and dead counts, the age
    of the oldest waiting event, and why a destination is stopped."""
    now = time.time()
    with opened_outbox(ctx.obj["url"]) as box:
        rows = box.status(now=now)
        delivered = box.stats(now=now).delivered
    if as_json:
        for row in rows:
            click.echo(json.dumps(_as_json(row, now)))
        return
    click.echo(f"outbox {safe_url(ctx.obj['url'])}: {delivered} delivered in all")
    if not rows:
        click.echo("Nothing waiting.")
        return
    header = ["DESTINATION", *(str(s).upper() for s in STATES), "OLDEST"]
    table = [
        [
            row.destination,
            *(str(row.counts[s]) for s in STATES),
            _age(None if row.oldest_enqueued_at is None else now - row.oldest_enqueued_at),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    for row in rows:
        if row.stopped_reason:
            click.echo(f"\n{row.destination} is stopped: {row.stopped_reason}")
            click.echo(
                f"After fixing the cause: cdp-tiktok outbox release {row.destination} "
                f"(send them) or cdp-tiktok outbox purge {row.destination} (drop them)."
            )


@outbox.command()
@delivery_options
@click.pass_context
def drain(
    ctx: click.Context,
    settings_file: Path | None,
    access_token: str | None,
    endpoint: str | None,
    concurrency: int | None,
) -> None:
    """Deliver what is pending, without new input; return when nothing more can be sent.

    Exit status 1 when an event was dead-lettered or a destination stopped.
    """
    from cdp_tiktok.delivery.runner import run_delivery
    from cdp_tiktok.host import Host
    from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

    url = ctx.obj["url"]
    with contextlib.ExitStack() as stack:
        if ctx.obj["sandbox"]:
            from cdp_tiktok.sandbox.server import SandboxServer

            server = stack.enter_context(SandboxServer(access_token=SANDBOX_ACCESS_TOKEN))
            access_token, endpoint = SANDBOX_ACCESS_TOKEN, server.url
        settings = delivery_settings_from(settings_file, url, access_token, endpoint)
        box = stack.enter_context(opened_outbox(url))
        host = stack.enter_context(Host(settings, identity=None))
        report = run_delivery(
            box,
            settings,
            drain=True,
            host=host,
            concurrency=concurrency,
            on_wait=lambda text: click.echo(f"waiting: {text}", err=True),
        )
    click.echo(
        f"delivered {report.delivered}, retried {report.retried}, dead-lettered "
        f"{report.dead}, {report.requests} requests"
    )
    for destination, reason in report.stopped.items():
        click.echo(f"stopped {destination}: {reason} (events kept in the outbox)", err=True)
    if report.dead or report.stopped:
        sys.exit(1)


@outbox.command()
@click.argument("destination")
@click.pass_context
def release(ctx: click.Context, destination: str) -> None:
    """Clear DESTINATION's stop and make its waiting events ready to send now."""
    with opened_outbox(ctx.obj["url"]) as box:
        count = box.release_destination(destination)
    click.echo(
        f"Released {count} event(s) of {destination}; `cdp-tiktok outbox drain` or a worker "
        "sends them."
    )


@outbox.command()
@click.argument("destination")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, destination: str, yes: bool) -> None:
    """Delete DESTINATION's pending and waiting events for good (not its dead letters)."""
    with opened_outbox(ctx.obj["url"]) as box:
        rows = {row.destination: row for row in box.status()}
        row = rows.get(destination)
        waiting = 0 if row is None else sum(row.counts[s] for s in WAITING)
        if not yes and waiting:
            click.confirm(
                f"Delete {waiting} waiting event(s) of {destination} for good?", abort=True
            )
        count = box.purge_destination(destination)
    click.echo(f"Purged {count} event(s) of {destination}.")


@outbox.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create the outbox's schema, or bring it to this version (also done at every start)."""
    with opened_outbox(ctx.obj["url"], must_exist=False) as box:
        version = getattr(box, "schema_version", None)
    shown = "" if version is None else f" (schema version {version})"
    click.echo(f"Outbox {safe_url(ctx.obj['url'])} is up to date{shown}.")

"""``cdp-tiktok worker``: a long-running delivery loop on one outbox, stopped by a signal."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from cdp_tiktok.cli.options import ACCESS_TOKEN_OPTION, SETTINGS_FILE_OPTION
from cdp_tiktok.cli.stores import opened_outbox
from cdp_tiktok.settings import SettingsError, TikTokSettings, load_settings


def delivery_settings_from(
    settings_file: Path | None,
    outbox: str | None,
    access_token: str | None,
    endpoint: str | None,
) -> TikTokSettings:
    """Settings for a process that only delivers: an access token is required, a pixel
    code is not (each stored event carries its own event_source_id)."""
    try:
        settings = load_settings(
            file=settings_file,
            overrides={"outbox": outbox, "access_token": access_token, "endpoint": endpoint},
        ).validate(need_credentials=False)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if settings.destinations:  # each destination of the list has its own token variable
        from cdp_tiktok.destinations import destination_settings

        missing = [n for n, s in destination_settings(settings).items() if not s.access_token]
        if missing:
            raise click.UsageError(
                f"no access token for destination {', '.join(missing)}: set the variable "
                "its access_token_env names (or CDP_TIKTOK_ACCESS_TOKEN for all)"
            )
        return settings
    if not settings.access_token:
        raise click.UsageError(
            "access_token is required: pass --access-token or set CDP_TIKTOK_ACCESS_TOKEN"
        )
    return settings


DELIVERY_OPTIONS = [
    SETTINGS_FILE_OPTION,
    ACCESS_TOKEN_OPTION,
    click.option("--endpoint", help="TikTok API base URL. Env: CDP_TIKTOK_ENDPOINT."),
    click.option(
        "--concurrency",
        type=click.IntRange(min=1, max=64),
        help="Requests in flight per destination (setting: concurrency, default 4).",
    ),
]


def delivery_options(function: Any) -> Any:
    """Decorate a command with the options of a delivering process."""
    for option in reversed(DELIVERY_OPTIONS):
        function = option(function)
    return function


@click.command()
@click.option(
    "--outbox",
    "outbox_url",
    metavar="URL",
    help="Outbox URL (sqlite:///path.db or postgresql://user@host/db). Env: CDP_TIKTOK_OUTBOX.",
)
@delivery_options
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=1),
    help="How long a claim is leased; a killed worker's events are sent by others after "
    "this (default: max(15, 2 x timeout_seconds + 5)).",
)
def worker(
    outbox_url: str | None,
    settings_file: Path | None,
    access_token: str | None,
    endpoint: str | None,
    concurrency: int | None,
    lease_seconds: float | None,
) -> None:
    """Deliver the outbox's events until stopped (SIGTERM or Ctrl-C).

    Any number of workers may share one outbox (SQLite: processes on one machine;
    PostgreSQL: any machines): each claims its own leases. When nothing is due the
    worker sleeps until the next retry time, checking for new events at least every
    0.25 s (PostgreSQL: woken at once by LISTEN/NOTIFY). On SIGTERM or SIGINT it finishes
    the requests in flight, gives back the leases it has not sent, and exits 0.
    """
    from cdp_tiktok.delivery.runner import run_delivery
    from cdp_tiktok.host import Host

    settings = delivery_settings_from(settings_file, outbox_url, access_token, endpoint)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with (
            opened_outbox(settings.outbox, must_exist=False) as outbox,
            Host(settings, identity=None) as host,
        ):
            click.echo(f"worker delivering from {settings.outbox}", err=True)
            report = run_delivery(
                outbox,
                settings,
                drain=False,
                stop=stop,
                host=host,
                concurrency=concurrency,
                lease_seconds=lease_seconds,
                on_wait=lambda text: click.echo(f"waiting: {text}", err=True),
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for destination, reason in report.stopped.items():
        click.echo(f"stopped {destination}: {reason}", err=True)
    click.echo(
        f"worker stopped: delivered {report.delivered}, retried {report.retried}, "
        f"dead-lettered {report.dead}, {report.requests} requests",
        err=True,
    )

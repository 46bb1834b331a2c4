"""``cdp-tiktok sandbox``: run the local TikTok Events API until interrupted."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from cdp_tiktok.sandbox.server import READ_TIMEOUT, SandboxServer
from cdp_tiktok.sandbox.state import DEFAULT_MEMORY_LIMIT
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN
from cdp_tiktok.tiktok.payload import ENDPOINT_PATH

_RATE = click.FloatRange(0.0, 1.0)


def _stderr(text: str) -> None:
    click.echo(text, err=True)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    show_default=True,
    help="Port (0: a free one).",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append accepted events to this JSON Lines file.",
)
@click.option(
    "--access-token",
    envvar="CDP_TIKTOK_SANDBOX_ACCESS_TOKEN",
    default=None,
    help="Token the sandbox expects in Access-Token (default: the built-in sandbox token). "
    "Also read from CDP_TIKTOK_SANDBOX_ACCESS_TOKEN.",
)
@click.option("--throttle-rate", type=_RATE, default=0.0, help="Share of requests answered 40100.")
@click.option("--error-rate", type=_RATE, default=0.0, help="Share answered HTTP 503 (HTML).")
@click.option("--drop-rate", type=_RATE, default=0.0, help="Share closed without an answer.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Delay per answer.")
@click.option(
    "--poison",
    multiple=True,
    metavar="EVENT_ID",
    help="A batch holding this event_id fails with 40002 (repeatable).",
)
@click.option(
    "--allowed-source-id",
    "allowed_source_ids",
    multiple=True,
    metavar="ID",
    help="Answer 40001 for any other event_source_id (repeatable; default: any).",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault RNG (reproducible runs).")
@click.option(
    "--memory-limit",
    type=click.IntRange(0),
    default=DEFAULT_MEMORY_LIMIT,
    show_default=True,
    metavar="N",
    help="Accepted events kept in memory for /sandbox/events (the oldest are dropped "
    "first); 0 keeps none. Counters and duplicate detection cover every event.",
)
@click.option(
    "--require-page-url",
    is_flag=True,
    help="Refuse web events without page.url (40002). Off by default: TikTok's "
    "established integrations send server-side web events without a page.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0, min_open=True),
    default=READ_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Close a connection silent this long (a slow client mid-request, or an idle keep-alive).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log one line per request on stderr.")
def sandbox(
    host: str,
    port: int,
    record: Path | None,
    access_token: str | None,
    throttle_rate: float,
    error_rate: float,
    drop_rate: float,
    latency_ms: float,
    poison: tuple[str, ...],
    allowed_source_ids: tuple[str, ...],
    seed: int | None,
    memory_limit: int,
    require_page_url: bool,
    read_timeout: float,
    verbose: bool,
) -> None:
    """Run a local TikTok Events API (POST /open_api/v1.3/event/track/).

    Prints the base URL on stdout once listening, then serves until Ctrl-C.
    Inspect with GET /sandbox/stats and GET /sandbox/events?since=N.
    """
    server = SandboxServer(
        host,
        port,
        access_token=access_token or SANDBOX_ACCESS_TOKEN,
        throttle_rate=throttle_rate,
        error_rate=error_rate,
        drop_rate=drop_rate,
        latency_ms=latency_ms,
        poison=poison,
        record_path=record,
        seed=seed,
        allowed_source_ids=allowed_source_ids or None,
        memory_limit=memory_limit,
        log=_stderr if verbose else None,
        require_page_url=require_page_url,
        read_timeout=read_timeout,
    )
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
    click.echo(server.url)
    sys.stdout.flush()
    token_note = "custom (--access-token)" if access_token else "the built-in sandbox token"
    _stderr(f"TikTok sandbox: POST {server.url}{ENDPOINT_PATH}")
    _stderr(f"  access token: {token_note}")
    _stderr(f"  inspect: {server.url}/sandbox/stats, {server.url}/sandbox/events?since=0")
    if record is not None:
        _stderr(f"  recording accepted events to {record}")
    _stderr("  press Ctrl-C to stop")

    stopped = threading.Event()

    def _on_term(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _on_term)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        stats = server.stats()
        _stderr(
            f"sandbox stopped: {stats.requests} requests, {stats.accepted_events} events "
            f"accepted ({stats.duplicates} duplicates)"
        )

"""``cdp-tiktok send``: map Segment messages, enqueue them durably, deliver until drained."""

from __future__ import annotations

import contextlib
import os
import select
import stat
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdp_tiktok.cli.options import (
    sandbox_settings,
    setting_options,
    settings_from_options,
    where,
)
from cdp_tiktok.delivery.destinations import delivery_settings
from cdp_tiktok.events import MapResult, OutgoingEvent
from cdp_tiktok.settings import TikTokSettings

ENQUEUE_CHUNK = 1000
ENQUEUE_LINGER = 0.2
"""Seconds after which mapped events of standard input are enqueued even if fewer than
ENQUEUE_CHUNK (a file is enqueued in whole chunks)."""
PROGRESS_EVERY = 500
HINTS = {
    "web events need page.url": "require_page_url is on, so web events without a page URL "
    "(context.page.url, properties.url) are skipped; set default_page_url (--settings file "
    "or CDP_TIKTOK_DEFAULT_PAGE_URL) or turn require_page_url off.",
    "phone:no_region": "phone numbers without a country code were dropped: the message "
    "gave no address country or locale region; set --default-phone-region (e.g. US) to "
    "read them as national numbers.",
}
"""Substrings of warnings or drop reasons, and what the user can do about them."""
USER_KEYS = (
    "email",
    "phone",
    "external_id",
    "ttclid",
    "ttp",
    "ip",
    "user_agent",
    "locale",
    "first_name",
    "last_name",
    "zip_code",
    "city",
    "state",
    "country",
    "idfa",
    "idfv",
    "gaid",
)


@dataclass
class IntakeSummary:
    """What reading and mapping the input produced."""

    messages: int = 0
    invalid: int = 0
    without_event: int = 0
    events: int = 0
    skipped: int = 0
    # (event name, match-key names) -> events: one count per event, the tables from it
    shapes: Counter[tuple[str, tuple[str, ...]]] = field(default_factory=Counter)
    old_events: int = 0
    undeliverable: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    dropped_keys: Counter[str] = field(default_factory=Counter)
    phone_regions: Counter[str] = field(default_factory=Counter)

    def observe(self, message: Any, result: MapResult) -> None:
        """Collect a mapping result's warnings, dropped match-key values (no raw values)
        and the sources of the regions national phone numbers were read with."""
        if result.warnings:
            self.warnings.update(result.warnings)
        if result.dropped_keys:
            self.dropped_keys.update(result.dropped_keys)
        if result.phone_regions:
            self.phone_regions.update(result.phone_regions)

    def count(self, event: OutgoingEvent, max_age_seconds: float, now: float) -> None:
        """Account one produced event."""
        self.events += 1
        data = event.data
        user = data.get("user")
        self.shapes[str(data.get("event")), tuple(user) if user else ()] += 1
        event_time = data.get("event_time")
        if isinstance(event_time, int) and now - event_time > max_age_seconds:
            self.old_events += 1

    @property
    def by_event(self) -> Counter[str]:
        """Events by TikTok event name."""
        counts: Counter[str] = Counter()
        for (name, _), count in self.shapes.items():
            counts[name] += count
        return counts

    @property
    def key_coverage(self) -> Counter[str]:
        """Events by match key they carry."""
        counts: Counter[str] = Counter()
        for (_, keys), count in self.shapes.items():
            for key in keys:
                counts[key] += count
        return counts


class _Available:
    """Reads what a pipe has now (``read1``) instead of waiting for a full chunk, so
    messages of a live stream are mapped as they arrive; before it would wait for more
    input it calls ``on_idle`` (the caller enqueues what it has mapped so far)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.on_idle: Callable[[], None] | None = None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, blocking only while nothing at all is available."""
        if not size:
            return b""
        if self.on_idle is not None and not self._ready():
            self.on_idle()
        data: bytes = self._raw.read1(size)
        return data

    def _ready(self) -> bool:
        try:
            return bool(select.select([self._raw], [], [], 0)[0])
        except (OSError, ValueError):  # not selectable: assume data may be waiting
            return True

    def close(self) -> None:
        """Nothing to close: standard input belongs to the process."""


def _open_input(path: str) -> tuple[Any, str]:
    if path == "-":
        return _Available(sys.stdin.buffer), "<stdin>"
    try:
        return open(path, "rb"), path
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None


class _Enqueuer:
    """Enqueues each chunk at once, in this process: the memory outbox's way (it is
    delivered here, after the input ends; no SQL runs that another thread could overlap)."""

    def __init__(self, outbox: Any, summary: IntakeSummary, dedup_seconds: float) -> None:
        self._outbox = outbox
        self._summary = summary
        self._dedup = dedup_seconds

    @staticmethod
    def prepare(event: OutgoingEvent) -> Any:
        """The event as it is: the outbox encodes it."""
        return event

    def put(self, events: list[OutgoingEvent]) -> None:
        """Enqueue a chunk (durable on return); count what was skipped."""
        stored = self._outbox.enqueue(events, dedup_seconds=self._dedup)
        self._summary.skipped += len(events) - len(stored)


class _ChildEnqueuer:
    """Hands chunks to the delivery process, which enqueues them in order on its own
    connection (:meth:`~cdp_tiktok.delivery.process.DeliveryProcess.enqueue`), off this
    process's GIL; the skipped counts come back through the process's ``on_enqueued``.
    Each event is encoded as soon as it is mapped (:meth:`prepare`). :meth:`put` raises
    the child's enqueue failure; the child's ``finish`` waits until every chunk is
    durably enqueued, its ``stop`` drops what was not."""

    def __init__(self, child: Any, dedup_seconds: float) -> None:
        from cdp_tiktok.delivery.process import prepare

        self._child = child
        self._dedup = dedup_seconds
        self._prepare = prepare

    def prepare(self, event: OutgoingEvent) -> Any:
        """The event encoded (``ValueError`` or ``TypeError`` if it is not JSON)."""
        return self._prepare(event)

    def put(self, events: list[Any]) -> None:
        """Hand over a chunk (waits until the child has stored the one before)."""
        self._child.enqueue(events, self._dedup)


class _Writer(Protocol):
    """Where :func:`_map_into_outbox` hands its chunks: each event is made ready for it
    by ``prepare`` as it is mapped, then handed over by ``put`` in chunks."""

    def prepare(self, event: OutgoingEvent) -> Any: ...

    def put(self, events: list[Any]) -> None: ...


def _map_into_outbox(
    stream: Any,
    source: str,
    host: Any,
    writer: _Writer | None,
    summary: IntakeSummary,
    settings: TikTokSettings,
    err: Console,
    deliverable: frozenset[str],
    on_read: Callable[[IntakeSummary], None] | None = None,
) -> None:
    """Map every message of ``stream``, counting into ``summary``, and hand the events
    for ``deliverable`` destinations to ``writer`` in chunks (none: a dry run); the
    identity writes the events were mapped with are flushed before each chunk."""
    from cdp_tiktok.readahead import read_ahead

    pending: list[Any] = []
    max_age = settings.max_event_age_days * 86400.0
    now = time.time()
    flushed_at = time.monotonic()
    # Only a live stream needs the linger: a file is read as fast as it maps, and
    # lingering there would only cut the chunks (and the requests) short.
    live = isinstance(stream, _Available)
    linger = ENQUEUE_LINGER if live else float("inf")

    def flush() -> None:
        nonlocal pending, flushed_at
        if writer is not None and pending:
            host.flush()  # the identity writes these events were mapped with, first
            writer.put(pending)
            pending = []
        flushed_at = time.monotonic()

    if live:
        stream.on_idle = flush
    limit = settings.max_message_bytes
    for _line, item in read_ahead(stream, source, max_message_bytes=limit):
        summary.messages += 1
        if on_read is not None and summary.messages % PROGRESS_EVERY == 0:
            on_read(summary)
        if isinstance(item, Exception):
            summary.invalid += 1
            err.print(f"[red]invalid[/red] {item}", markup=True, highlight=False)
            continue
        events = host.process(item, validated=True)
        if not events:
            summary.without_event += 1
        for event in events:
            summary.count(event, max_age, now)
        if writer is not None:
            for event in events:
                if event.key.destination in deliverable:
                    pending.append(writer.prepare(event))
                else:
                    summary.undeliverable[event.key.destination] += 1
            if len(pending) >= ENQUEUE_CHUNK or time.monotonic() - flushed_at >= linger:
                flush()
    flush()
    if on_read is not None:
        on_read(summary)


@contextlib.contextmanager
def _sandbox(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from cdp_tiktok.sandbox.child import SandboxProcess

    # its own process, so serving it does not take this one's core and GIL
    with SandboxProcess() as server:
        yield server


def _summary_table(summary: IntakeSummary, report: Any, sandbox: Any) -> Table:
    table = Table(title="cdp-tiktok send", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("messages read", str(summary.messages))
    table.add_row("invalid messages (see above)", str(summary.invalid))
    table.add_row("messages that map to no TikTok event", str(summary.without_event))
    table.add_row("TikTok events produced", str(summary.events))
    if summary.skipped:
        table.add_row(
            "skipped: already pending or sent (--resend sends them)", str(summary.skipped)
        )
    if report is not None:
        table.add_row("[green]delivered[/green]", str(report.delivered))
        table.add_row("retried attempts", str(report.retried))
        table.add_row("[red]dead-lettered[/red]", str(report.dead))
        table.add_row("HTTP requests", str(report.requests))
    if sandbox is not None:
        table.add_row("events recorded by the sandbox", str(sandbox.stats().accepted_events))
    return table


def _coverage_table(summary: IntakeSummary) -> Table:
    table = Table(title="match keys")
    table.add_column("key")
    table.add_column("events", justify="right")
    table.add_column("share", justify="right")
    coverage = summary.key_coverage
    for key in USER_KEYS:
        count = coverage.get(key, 0)
        if count:
            share = f"{100.0 * count / summary.events:.0f}%" if summary.events else "-"
            table.add_row(key, str(count), share)
    return table


def _problems_table(summary: IntakeSummary) -> Table:
    table = Table(title="mapping warnings and dropped match-key values")
    table.add_column("what")
    table.add_column("count", justify="right")
    for text, count in summary.warnings.most_common(15):
        table.add_row(text, str(count))
    for reason, count in sorted(summary.dropped_keys.items()):
        table.add_row(f"match-key value dropped: {reason}", str(count))
    return table


def _counts_table(title: str, columns: tuple[str, str], counts: Counter[str]) -> Table:
    table = Table(title=title)
    table.add_column(columns[0])
    table.add_column(columns[1], justify="right")
    for name, count in counts.most_common():
        table.add_row(name, str(count))
    return table


@click.command()
@click.argument("input_path", metavar="FILE|-", default="-")
@setting_options
@click.option(
    "--outbox",
    "outbox_url",
    help="Outbox URL, e.g. sqlite:///path/outbox.db. Env: CDP_TIKTOK_OUTBOX.",
)
@click.option("--endpoint", help="TikTok API base URL. Env: CDP_TIKTOK_ENDPOINT.")
@click.option("--identity", "identity_url", help="Identity store URL. Env: CDP_TIKTOK_IDENTITY.")
@click.option(
    "--sandbox", is_flag=True, help="Start an embedded local TikTok sandbox and send there."
)
@click.option("--dry-run", is_flag=True, help="Map and count, but enqueue and send nothing.")
@click.option(
    "--resend",
    is_flag=True,
    help="Enqueue every event, even one already pending or delivered within "
    "dedup_window_hours (default: skip those, so a re-run after a crash sends only the rest).",
)
def send(
    input_path: str,
    outbox_url: str | None,
    endpoint: str | None,
    identity_url: str | None,
    sandbox: bool,
    dry_run: bool,
    resend: bool,
    **options: Any,
) -> None:
    """Map Segment messages from FILE (JSON, JSON array or JSON Lines), enqueue, deliver.

    Events are durably enqueued in chunks (1,000 events, or from standard input every
    0.2 s as messages arrive) and, with an SQLite or PostgreSQL outbox, delivered by a
    second process while the input is still read; once the input ends, it delivers until
    the outbox is drained. Enqueueing is idempotent: an event already pending, or
    delivered within dedup_window_hours, is skipped (counted in
    the summary) unless --resend is given. Exit status 1 when any event was
    dead-lettered, a destination stopped, or a message was invalid.
    """
    out = Console()
    err = Console(stderr=True)
    extra: dict[str, Any] = {"outbox": outbox_url, "endpoint": endpoint, "identity": identity_url}
    settings = settings_from_options(options, **extra)
    if sandbox:
        settings = sandbox_settings(settings, outbox=outbox_url, identity=identity_url)
    from cdp_tiktok.destinations import check_destinations

    # SettingsError: one Error: line, exit 2 (cdp_tiktok.cli.errors)
    check_destinations(settings, need_credentials=not (dry_run or sandbox))

    if sandbox and not dry_run:
        err.print(
            f"sandbox: outbox {where(settings.outbox)}, identity store "
            f"{where(settings.identity)} (see: cdp-tiktok outbox --sandbox status)",
            highlight=False,
            soft_wrap=True,
        )
    dedup_seconds = 0.0 if resend else settings.dedup_window_hours * 3600.0

    from cdp_tiktok.host import Host

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(_sandbox(sandbox and not dry_run))
        if server is not None:
            settings = replace(settings, endpoint=server.url)
        outbox = None
        if not dry_run:
            from cdp_tiktok.backends import open_outbox

            outbox = open_outbox(settings.outbox)
            stack.callback(outbox.close)
        host = stack.enter_context(Host(settings, identity=settings.identity))
        stream, source = _open_input(input_path)
        stack.callback(stream.close)

        routes = delivery_settings(settings)
        summary = IntakeSummary()
        for target in host.destinations.values():
            target.state["observer"] = summary.observe
        report = None
        if outbox is None:
            with err.status("mapping…"):
                _map_into_outbox(
                    stream, source, host, None, summary, settings, err, frozenset(routes)
                )
        else:
            report = _map_and_deliver(
                stream, source, host, outbox, summary, settings, err, dedup_seconds
            )

        out.print(_summary_table(summary, report, server))
        if summary.events:
            out.print(_counts_table("TikTok events", ("event", "count"), summary.by_event))
            out.print(_coverage_table(summary))
        if summary.phone_regions:
            title = "phone numbers without country code, read with the region from"
            out.print(_counts_table(title, ("source", "numbers"), summary.phone_regions))
        if summary.warnings or summary.dropped_keys:
            out.print(_problems_table(summary))
        seen = [*summary.warnings, *summary.dropped_keys]
        for text, hint in HINTS.items():
            if any(text in item for item in seen):
                err.print(f"[yellow]hint[/yellow]: {hint}")
        if summary.old_events:
            err.print(
                f"[yellow]warning[/yellow]: {summary.old_events} events are older than "
                f"{settings.max_event_age_days:g} days (max_event_age_days); TikTok may not "
                "attribute them. They were sent, not dropped."
            )
        for destination, count in summary.undeliverable.items():
            err.print(
                f"[yellow]warning[/yellow]: {count} events for destination {destination!r} were "
                "not enqueued: send has delivery settings only for the TikTok destinations."
            )
        if dry_run:
            out.print("dry run: nothing was enqueued or sent.")
        if report is not None:
            for destination, reason in report.stopped.items():
                err.print(f"[red]stopped[/red] {destination}: {reason} (events kept in the outbox)")
            if report.dead:
                err.print(
                    f"{report.dead} events were dead-lettered: "
                    f"cdp-tiktok dlq --outbox {settings.outbox} list"
                )
            if report.dead or report.stopped:
                sys.exit(1)
        if summary.invalid:
            sys.exit(1)


def _input_size(stream: Any) -> int | None:
    """The byte size of a regular input file, or ``None`` (standard input, a pipe)."""
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size > 0 else None


def _input_position(stream: Any) -> int | None:
    try:
        position: int = stream.tell()
    except (AttributeError, OSError, ValueError):
        return None
    return position


def _share(position: int, size: int) -> str:
    """How much of a file of ``size`` bytes is read, in the unit its size calls for."""
    if size >= 1_000_000:
        return f"{position / 1e6:.1f}/{size / 1e6:.1f} MB"
    if size >= 1000:
        return f"{position // 1000}/{size // 1000} kB"
    return f"{position}/{size} B"  # not 0/0 kB


def _describe(exc: BaseException) -> tuple[str, int]:
    """The ``Error:`` sentence and exit status of a failure in the delivery process."""
    from cdp_tiktok.cli.errors import DATA_ERROR, debug_enabled, translate

    if not isinstance(exc, Exception):
        return f"the delivery process was stopped ({type(exc).__name__})", DATA_ERROR
    context = click.get_current_context(silent=True)
    root = context.find_root() if context is not None else None
    if debug_enabled(bool(root is not None and root.params.get("debug"))):
        traceback.print_exception(exc)  # the child's standard error is the command's
    error = translate(exc)
    return error.message, error.exit_code


def _map_and_deliver(
    stream: Any,
    source: str,
    host: Any,
    outbox: Any,
    summary: IntakeSummary,
    settings: TikTokSettings,
    err: Console,
    dedup_seconds: float,
) -> Any:
    """Map and enqueue the input while a delivery process sends; it then drains the outbox.

    With an outbox other processes can open (SQLite, PostgreSQL) a forked child
    (:class:`~cdp_tiktok.delivery.process.DeliveryProcess`, its own connection) delivers
    while this process still reads and maps, on the other core: a long or endless stream
    (``-``) is sent promptly, and once the input ends the child delivers what is left,
    retries included, and reports. The outbox is the hand-off, so a crash of either
    process loses no acknowledged event. A ``memory://`` outbox is delivered here, after
    the input ends.
    """
    from cdp_tiktok.backends import open_outbox
    from cdp_tiktok.cli.errors import CommandError
    from cdp_tiktok.delivery.process import DeliveryFailed, DeliveryProcess
    from cdp_tiktok.delivery.runner import build_deliverer
    from cdp_tiktok.delivery.worker import Deliverer

    routes = delivery_settings(settings)

    def deliverer(target: Any, on_wait: Callable[[str], None]) -> Deliverer:
        return build_deliverer(target, settings, host=host, on_wait=on_wait)

    def waiting(text: str) -> None:
        err.print(f"[yellow]waiting[/yellow]: {text}")

    size = _input_size(stream)
    progress = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.fields[amount]}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        refresh_per_second=4,  # drawing takes the GIL from mapping: 10 a second cost 5%
    )
    # A file's bar is its bytes read of its size (known before reading, whatever its
    # format); standard input has no total, so its bar counts messages.
    reading = progress.add_task("reading", total=size, amount="", detail="")
    sending = progress.add_task("delivering", total=0, amount="0/0", detail="")
    expected = {"events": 0}  # the delivery bar's total: events produced so far

    def on_progress(state: Any) -> None:
        done = state.delivered + state.dead
        total = expected["events"] = max(done, expected["events"])
        progress.update(
            sending,
            completed=done,
            total=total,
            amount=f"{done}/{total}",
            detail=f"delivered {state.delivered} · retrying {state.retried} · "
            f"dead-lettered {state.dead}",
        )

    def on_read(done: IntakeSummary) -> None:
        position = _input_position(stream)
        if size is None or position is None:
            progress.update(reading, completed=done.messages, amount=f"{done.messages} read")
        else:
            progress.update(reading, completed=position, amount=_share(position, size))
        progress.update(reading, detail=f"{done.events} events · {done.invalid} invalid")
        expected["events"] = max(done.events, expected["events"])
        progress.update(sending, total=expected["events"])

    def skipped(count: int) -> None:
        summary.skipped += count

    child: DeliveryProcess | None = None
    writer: _Writer
    if settings.outbox.startswith("memory:"):
        writer = _Enqueuer(outbox, summary, dedup_seconds)
    else:
        # Forked before the progress display starts its thread.
        child = DeliveryProcess(
            lambda: open_outbox(settings.outbox),
            deliverer,
            _describe,
            on_progress=on_progress,
            on_wait=waiting,
            on_enqueued=skipped,
        ).start()
        writer = _ChildEnqueuer(child, dedup_seconds)
    with progress:
        try:
            _map_into_outbox(
                stream, source, host, writer, summary, settings, err, frozenset(routes), on_read
            )
        except DeliveryFailed as failed:  # the child's enqueue failed, or the child ended
            assert child is not None
            child.stop()
            raise CommandError(failed.message, failed.exit_code) from None
        except BaseException:
            if child is not None:
                child.stop()  # requests in flight are settled, other leases released
            raise
        progress.update(reading, total=size or summary.messages, completed=size or summary.messages)
        read = f"{summary.messages} messages" + (f", {_share(size, size)}" if size else "")
        progress.update(reading, amount=read)
        if child is None:
            report = deliverer(outbox, waiting).run(drain=True, on_progress=on_progress)
        else:
            try:
                report = child.finish()
            except DeliveryFailed as failed:
                raise CommandError(failed.message, failed.exit_code) from None
            except BaseException:
                child.stop()
                raise
        on_progress(report)
    return report

"""``cdp-tiktok map``: show the TikTok events Segment messages become, without sending."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import IO, Any

import click

from cdp_tiktok.cli.options import setting_options, settings_from_options
from cdp_tiktok.events import BatchKey, MapResult
from cdp_tiktok.jsonout import line_writer
from cdp_tiktok.mapping.problems import MappingLoadError
from cdp_tiktok.messages import MessageError
from cdp_tiktok.readahead import read_ahead
from cdp_tiktok.settings import SANDBOX_PIXEL_CODE


def _describe(message: Mapping[str, Any]) -> str:
    kind = message.get("type")
    if kind == "track":
        return f"track {message.get('event')!r}"
    return str(kind)


def _no_event_reason(message: Mapping[str, Any], results: list[MapResult], routed: bool) -> str:
    if not routed:
        return "no destination enabled (integrations)"
    if message.get("type") in ("identify", "alias") and not any(r.warnings for r in results):
        return f"{message.get('type')} calls feed the identity store and send no event"
    warnings = [w for r in results for w in r.warnings if "no event sent" in w]
    if warnings:
        return "; ".join(warnings)
    return f"no rule matches {_describe(message)}"


@click.command("map")
@click.argument("file", type=click.File("rb"), default="-", metavar="[FILE|-]")
@setting_options
@click.option(
    "--explain",
    is_flag=True,
    help="Say on stderr, per message, which rule fired and why the others did not.",
)
@click.option(
    "--envelope",
    is_flag=True,
    help="Print whole request bodies (up to 1,000 events per batch key) instead of data[] items.",
)
@click.option(
    "--identity",
    "identity_url",
    default="memory://",
    show_default=True,
    help="Identity store (memory:// or sqlite:///path): identify calls enrich later events.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Only the summary on stderr (no per-message notes)."
)
def map_command(
    file: IO[bytes],
    explain: bool,
    envelope: bool,
    identity_url: str,
    quiet: bool,
    **options: Any,
) -> None:
    """Map Segment messages in FILE ('-': standard input) to TikTok events.

    FILE holds one JSON object, a JSON array, JSON Lines, or Segment batch envelopes;
    it is streamed (constant memory). Standard output gets, for each TikTok event, one
    line of compact JSON that is exactly the data[] item as it would be sent (with
    --envelope: one request body per line). Standard error gets, per message, invalid
    messages (FILE:LINE: reason), warnings, messages that produce no event and why, the
    --explain notes, then a summary. Nothing is sent. Exits 1 when any message is
    invalid, 2 when a mapping file has an error.
    """
    settings = settings_from_options(options)
    if not settings.event_source_id:
        settings = dataclasses.replace(settings, event_source_id=SANDBOX_PIXEL_CODE)
        if envelope and not quiet:
            click.echo("note: no pixel code given; envelopes use the sandbox pixel code", err=True)
    from cdp_tiktok.host import Host
    from cdp_tiktok.tiktok.destination import TikTokPlugin

    name = getattr(file, "name", "-")
    source = "<stdin>" if name in ("-", "<stdin>") else str(name)
    err = sys.stderr
    out = sys.stdout
    write_line = line_writer(out)
    results: list[MapResult] = []
    with Host(settings, identity=identity_url) as host:
        plugin = host.plugin("tiktok")
        for destination in host.destinations.values():
            if destination.plugin != "tiktok" or not isinstance(plugin, TikTokPlugin):
                continue
            try:
                plugin.mapping_set(destination)
            except MappingLoadError as exc:
                for problem in exc.problems:
                    err.write(f"{problem}\n")
                raise SystemExit(2) from None
            destination.state["explain"] = explain
            destination.state["observer"] = lambda message, result: results.append(result)
        batches: dict[BatchKey, list[dict[str, Any]]] = {}
        batch_limit = settings.batch_max_events
        counts = {"messages": 0, "events": 0, "empty": 0, "invalid": 0}

        def flush(key: BatchKey) -> None:
            from cdp_tiktok.tiktok.payload import build_request

            body = build_request(key, batches.pop(key), settings.partner_name)
            write_line(body)

        limit = settings.max_message_bytes
        for line, item in read_ahead(file, source, max_message_bytes=limit):
            counts["messages"] += 1  # every message read, the invalid ones too (as send)
            if isinstance(item, MessageError):
                counts["invalid"] += 1
                err.write(f"{item}\n")
                continue
            results.clear()
            routes = host.route(item)
            events = host.process(item, validated=True, routes=routes)
            where = f"{source}:{line}"
            if not quiet:
                for result in results:
                    for note in result.explain:
                        err.write(f"{where}: explain: {note}\n")
                    for warning in result.warnings:
                        if "no event sent" not in warning or events:
                            err.write(f"{where}: warning: {warning}\n")
            if not events:
                counts["empty"] += 1
                if not quiet:
                    reason = _no_event_reason(item, results, bool(routes))
                    err.write(f"{where}: no event: {reason}\n")
                continue
            counts["events"] += len(events)
            for event in events:
                if envelope:
                    batch = batches.setdefault(event.key, [])
                    batch.append(event.data)
                    if len(batch) >= batch_limit:
                        flush(event.key)
                else:
                    write_line(event.data)
        for key in list(batches):
            flush(key)
        out.flush()
    err.write(
        f"{counts['messages']} message(s): {counts['events']} event(s), "
        f"{counts['empty']} without event, {counts['invalid']} invalid\n"
    )
    if counts["invalid"]:
        raise SystemExit(1)

"""``cdp-tiktok report``: match quality of a sample of real messages, before sending."""

from __future__ import annotations

import dataclasses
import json
from typing import IO, Any

import click

from cdp_tiktok.cli.options import setting_options, settings_from_options

SHORT = {"external_id": "ext_id", "ip+user_agent": "ip+ua"}


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


@click.command()
@click.argument("file", type=click.File("rb"), default="-", metavar="[FILE|-]")
@setting_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
def report(file: IO[bytes], as_json: bool, **options: Any) -> None:
    """Map a sample of real Segment messages and show how well each TikTok event will match.

    Per TikTok event name: how many events, the share carrying each match key (email,
    phone, external_id, ttclid, ttp, ip+user_agent), the share with at least two strong
    keys (email, phone, external_id, ttclid), and the top reasons keys were dropped
    (e.g. phone:no_region: set --default-phone-region). Nothing is sent or stored;
    identify calls in the sample enrich later events in memory, as they would live.
    Only counts are printed, never a value. Invalid messages are reported on stderr
    (FILE:LINE: reason); exits 1 when there is any.
    """
    from rich.console import Console
    from rich.table import Table

    from cdp_tiktok.conformance.cases import DEFAULT_PIXEL
    from cdp_tiktok.conformance.quality import KEYS, build_report
    from cdp_tiktok.host import Host, PluginError
    from cdp_tiktok.jsonstream import iter_messages
    from cdp_tiktok.mapping.problems import MappingLoadError

    settings = settings_from_options(options)
    if not settings.event_source_id:
        settings = dataclasses.replace(settings, event_source_id=DEFAULT_PIXEL)
    name = getattr(file, "name", "-")
    source = "<stdin>" if name in ("-", "<stdin>") else str(name)
    try:
        with Host(settings, identity="memory://") as host:
            quality = build_report(
                (item for _, item in iter_messages(file, source)),
                host,
                on_invalid=lambda error: click.echo(str(error), err=True),
            )
    except MappingLoadError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(2) from None
    except PluginError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(quality.as_dict(), indent=2))
    else:
        table = Table(title=f"match quality: {source} ({settings.event_source})")
        table.add_column("TikTok event", style="bold", no_wrap=True)
        table.add_column("events", justify="right")
        for key in KEYS:
            table.add_column(SHORT.get(key, key), justify="right")
        table.add_column("≥2 strong", justify="right")
        table.add_column("top drop reasons")
        for event, stats in sorted(quality.events.items()):
            reasons = ", ".join(f"{r} x{n}" for r, n in stats.dropped.most_common(3)) or "-"
            table.add_row(
                event,
                str(stats.count),
                *(_percent(stats.keys[key], stats.count) for key in KEYS),
                _percent(stats.two_strong, stats.count),
                reasons,
            )
        console = Console()
        if not console.is_terminal:
            console = Console(width=140)
        console.print(table)
        click.echo(
            f"{quality.messages} message(s), {quality.without_event} without event, "
            f"{quality.invalid} invalid"
        )
    if quality.invalid:
        raise SystemExit(1)

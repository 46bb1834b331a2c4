"""``cdp-tiktok plugins``: every plugin the host loads, its origin and its hooks."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from cdp_tiktok.host import Host


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List plugins (built-in, registered and from the cdp_tiktok entry-point group)."""
    with Host(identity=None) as host:
        infos = host.plugin_info()
    if as_json:
        import json

        click.echo(
            json.dumps(
                [{"name": i.name, "source": i.source, "hooks": list(i.hooks)} for i in infos],
                indent=2,
            )
        )
        return
    table = Table(title="cdp_tiktok plugins")
    table.add_column("plugin", style="bold")
    table.add_column("source")
    table.add_column("hooks")
    for info in infos:
        table.add_row(info.name, info.source, ", ".join(info.hooks))
    Console().print(table)

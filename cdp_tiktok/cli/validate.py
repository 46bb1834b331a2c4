"""``cdp-tiktok validate``: check mapping files before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cdp_tiktok.cli.options import setting_options, settings_from_options
from cdp_tiktok.mapping.defaults import mapping_dirs
from cdp_tiktok.mapping.engine import validate_directory


@click.command()
@click.argument(
    "paths", nargs=-1, type=click.Path(exists=True, path_type=Path), metavar="[DIR|FILE]..."
)
@setting_options
def validate(paths: tuple[Path, ...], **options: Any) -> None:
    """Check mapping files: schema, templates, triggers, event catalog, reserved names.

    Checks DIR (every *.yaml/*.yml file in it) or FILE; without one, the configured
    mapping directory (--mappings or the packaged defaults) plus the directories
    plugins register. Event names are checked for --event-source (default web).
    Prints each problem as FILE:LINE: SEVERITY: MESSAGE, then a summary. Exits 1 when
    there is any error, 0 with warnings only.
    """
    settings = settings_from_options(options)
    from cdp_tiktok.host import Host

    host = Host(settings, identity=None)
    try:
        dirs = list(paths) if paths else mapping_dirs(settings, host.mapping_dirs)
        problems = validate_directory(dirs, filters=host.filters, settings=settings)
    finally:
        host.close()
    for problem in problems:
        click.echo(str(problem))
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    checked = ", ".join(str(d) for d in dirs)
    verdict = "FAILED" if errors else "OK"
    click.echo(
        f"{verdict}: {errors} error(s), {warnings} warning(s) in {checked} "
        f"(event_source {settings.event_source})",
        err=bool(errors),
    )
    if errors:
        raise SystemExit(1)

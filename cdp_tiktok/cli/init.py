"""``cdp-tiktok init``: start a mapping directory of your own from the defaults."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), metavar="DIR")
def init(directory: Path) -> None:
    """Create DIR with a copy of the default mappings, their golden cases (DIR/golden),
    a short README and a CI workflow (DIR/ci/conformance.yml) that runs the suite.

    DIR must not exist or be empty. The result passes `cdp-tiktok conformance DIR` as it
    is; edit the rules, then their cases.
    """
    from cdp_tiktok.conformance.scaffold import ScaffoldError, scaffold

    try:
        made = scaffold(directory)
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot create {directory}: {exc.strerror or exc}") from None
    for path in made:
        click.echo(f"created {path}")
    click.echo(f"next: cdp-tiktok conformance {directory}")

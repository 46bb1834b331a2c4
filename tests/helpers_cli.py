"""A command with a genuine bug, registered by tests to check the CLI's last-resort handler."""

from __future__ import annotations

import click


@click.command()
def explode() -> None:
    """Divide by zero: an error no handler knows."""
    print(1 / 0)

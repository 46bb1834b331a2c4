"""``cdp-tiktok identity``: manage the identity store (privacy requests)."""

from __future__ import annotations

from pathlib import Path

import click

from cdp_tiktok.backends import open_identity_store
from cdp_tiktok.cli.options import SANDBOX_IDENTITY
from cdp_tiktok.cli.stores import STORE_ERRORS, safe_url
from cdp_tiktok.settings import load_settings

_SQLITE = "sqlite:///"


@click.group()
def identity() -> None:
    """Manage the identity store of hashed match keys."""


@identity.command()
@click.option("--user-id", help="The person's userId.")
@click.option("--anonymous-id", help="The person's anonymousId.")
@click.option(
    "--store",
    metavar="URL",
    help="Identity store (sqlite:///path, postgresql://user@host/db); default: the "
    "`identity` setting.",
)
@click.option("--sandbox", is_flag=True, help="Act on the identity store of `send --sandbox`.")
def forget(user_id: str | None, anonymous_id: str | None, store: str | None, sandbox: bool) -> None:
    """Delete everything stored about a person (for privacy requests).

    Deletes the entries of the given ids and of every id linked to them by identify or
    alias calls. The ids are not printed.
    """
    if not user_id and not anonymous_id:
        raise click.UsageError("give --user-id, --anonymous-id, or both")
    settings = load_settings()
    if store and sandbox:
        raise click.UsageError("give --store or --sandbox, not both")
    url = store or (SANDBOX_IDENTITY if sandbox else settings.identity)
    if url.startswith(_SQLITE) and not Path(url[len(_SQLITE) :]).exists():
        click.echo(f"No identity store at {url}: nothing to forget.")
        return
    try:
        opened = open_identity_store(url, settings.identity_ttl_days * 86400.0)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None
    except STORE_ERRORS as exc:
        raise click.ClickException(f"cannot open {safe_url(url)}: {exc}") from None
    try:
        count = opened.forget(user_id=user_id, anonymous_id=anonymous_id)
    except STORE_ERRORS as exc:
        raise click.ClickException(f"cannot update {safe_url(url)}: {exc}") from None
    finally:
        opened.close()
    click.echo(f"Forgot {count} identity entr{'y' if count == 1 else 'ies'} in {safe_url(url)}.")

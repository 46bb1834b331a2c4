"""The ``cdp-tiktok`` command line.

Sub-commands live in their own modules and are imported only when invoked, so
``cdp-tiktok --help`` stays fast and one broken command cannot break the others. Errors
of every command become one located sentence in one place (:mod:`cdp_tiktok.cli.errors`).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from cdp_tiktok import __version__

# name -> "module:attribute"; each module owns one command (or group).
COMMANDS: dict[str, str] = {
    "check": "cdp_tiktok.cli.check:check",
    "plugins": "cdp_tiktok.cli.plugins:plugins",
    "validate": "cdp_tiktok.cli.validate:validate",
    "map": "cdp_tiktok.cli.map:map_command",
    "identity": "cdp_tiktok.cli.identity:identity",
    "sandbox": "cdp_tiktok.cli.sandbox:sandbox",
    "send": "cdp_tiktok.cli.send:send",
    "serve": "cdp_tiktok.cli.serve:serve",
    "dlq": "cdp_tiktok.cli.dlq:dlq",
    "conformance": "cdp_tiktok.cli.conformance:conformance",
    "init": "cdp_tiktok.cli.init:init",
    "report": "cdp_tiktok.cli.report:report",
    "outbox": "cdp_tiktok.cli.outbox:outbox",
    "worker": "cdp_tiktok.cli.worker:worker",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the sub-command; turn any error it raises into one ``Error:`` sentence
        (see :mod:`cdp_tiktok.cli.errors`), or re-raise it with ``--debug``."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from cdp_tiktok.cli.errors import debug_enabled, translate

            if debug_enabled(bool(ctx.params.get("debug"))):
                raise
            raise translate(exc) from None


def _trace_plugins(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # the host reads the switch from the environment (cdp_tiktok.plugins)
        os.environ["CDP_TIKTOK_TRACE_PLUGINS"] = "1"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cdp-tiktok")
@click.option(
    "--trace-plugins",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_trace_plugins,
    help="Print every plugin hook call (plugin, arguments, result; personal fields "
    "redacted) to stderr. Env: CDP_TIKTOK_TRACE_PLUGINS=1.",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Show the full traceback of an unexpected error (also: CDP_TIKTOK_DEBUG=1).",
)
def main(debug: bool) -> None:
    """Send Segment-spec customer data to TikTok's Events API, durably."""

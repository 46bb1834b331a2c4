"""One place that turns every error of a command into one located sentence.

Known error types (a bad setting, a store file that cannot be used, a broken mapping
file, a plugin that does not load, an unreadable input) become ``Error: <sentence>`` on
standard error with exit status 2 (usage or configuration) or 1 (data or files). Anything
else is a bug: it prints one sentence saying so and how to see the traceback
(``--debug`` or ``CDP_TIKTOK_DEBUG=1``), and exits with :data:`INTERNAL_ERROR`.
Every command registered in ``COMMANDS`` gets this without code of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Final

import click

DEBUG_ENV: Final = "CDP_TIKTOK_DEBUG"
CONFIG_ERROR: Final = 2
DATA_ERROR: Final = 1
INTERNAL_ERROR: Final = 70
"""Exit status of an unexpected error (a bug): ``EX_SOFTWARE`` of sysexits.h."""
REPORT_TO: Final = "the cdp_tiktok issue tracker"
MAX_DETAIL: Final = 300
"""Characters of an unexpected error's own message kept in the one-line report."""


class CommandError(click.ClickException):
    """A failure printed as one ``Error: ...`` line, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class


def _os_error(exc: BaseException) -> str:
    assert isinstance(exc, OSError)
    name = f"{exc.filename}: " if exc.filename else ""
    return f"{name}{exc.strerror or exc}"


def _mapping_problems(exc: BaseException) -> str:
    problems = [str(problem) for problem in getattr(exc, "problems", ())]
    return "\n".join(problems) or str(exc)


def _known() -> Mapping[type[BaseException], tuple[int, Callable[[BaseException], str]]]:
    # Imported here: `cdp-tiktok --help` must not import the whole package.
    from cdp_tiktok.backends import BackendError
    from cdp_tiktok.host import PluginError
    from cdp_tiktok.mapping.problems import MappingLoadError
    from cdp_tiktok.messages import MessageError
    from cdp_tiktok.settings import SettingsError
    from cdp_tiktok.storage import StorageError

    return {
        SettingsError: (CONFIG_ERROR, str),
        PluginError: (CONFIG_ERROR, str),
        BackendError: (CONFIG_ERROR, str),
        MappingLoadError: (CONFIG_ERROR, _mapping_problems),
        StorageError: (DATA_ERROR, str),
        MessageError: (DATA_ERROR, str),
        OSError: (DATA_ERROR, _os_error),
    }


def translate(exc: Exception) -> CommandError:
    """The :class:`CommandError` for ``exc``: a known error's own located sentence, or a
    sentence that names an unexpected error as a bug and says how to get details."""
    for kind, (code, describe) in _known().items():
        if isinstance(exc, kind):
            return CommandError(describe(exc), code)
    text = str(exc)
    if len(text) > MAX_DETAIL:
        text = text[: MAX_DETAIL - 1] + "…"
    return CommandError(
        f"unexpected {type(exc).__name__}: {text}. This is a bug in cdp_tiktok or a plugin: "
        f"run the command again with --debug (or {DEBUG_ENV}=1) to see the traceback, and "
        f"report it with that output to {REPORT_TO}.",
        INTERNAL_ERROR,
    )


def debug_enabled(flag: bool) -> bool:
    """Whether tracebacks are shown: ``--debug`` or ``CDP_TIKTOK_DEBUG`` set to a true value."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")

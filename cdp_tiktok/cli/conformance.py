"""``cdp-tiktok conformance``: prove a mapping directory and the plugins correct."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from cdp_tiktok.cli.options import setting_options, settings_from_options


@click.command()
@click.argument(
    "directory",
    required=False,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="[DIR]",
)
@setting_options
@click.option(
    "--cases",
    "cases_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of golden case files (default: DIR/golden).",
)
@click.option(
    "--thorough",
    is_flag=True,
    help="Ten times more generated examples per rule; failing ones shrunk to smallest.",
)
@click.option("--examples", type=click.IntRange(1, 100_000), help="Generated examples per rule.")
@click.option("--seed", type=int, help="Random seed for generated examples (default: fixed).")
@click.option("--sandbox", is_flag=True, help="Also send every case's output to the local sandbox.")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write JUnit XML to FILE (for CI test reports).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--verbose", "-v", is_flag=True, help="List passed checks too.")
def conformance(
    directory: Path | None,
    cases_dir: Path | None,
    thorough: bool,
    examples: int | None,
    seed: int | None,
    sandbox: bool,
    junit_path: Path | None,
    as_json: bool,
    verbose: bool,
    **options: Any,
) -> None:
    """Run the conformance suite on the mapping directory DIR and on every plugin.

    DIR defaults to --mappings or the packaged defaults. Checks, in order: the mapping
    files (as `validate`) and the golden case files; every golden case (DIR/golden/*.yaml),
    each failure as a diff by JSON pointer; property checks for every rule with generated
    messages that reach it (fixed seed; --thorough for more); every plugin against the
    hook contract; with --sandbox, every case's output through the local sandbox.
    Prints a summary table (or --json), writes --junit FILE, exits 1 on any failure.
    See docs/conformance.md.
    """
    from cdp_tiktok.conformance.output import as_json as results_json
    from cdp_tiktok.conformance.output import print_report, write_junit
    from cdp_tiktok.conformance.suite import Suite, SuiteOptions
    from cdp_tiktok.host import PluginError
    from cdp_tiktok.mapping.defaults import default_mapping_dir

    settings = settings_from_options(options)
    mapping_dir = directory or settings.mappings or default_mapping_dir()
    suite_options = SuiteOptions(
        mapping_dir=Path(mapping_dir),
        settings=settings,
        cases=cases_dir,
        examples=examples,
        thorough=thorough,
        seed=seed,
        sandbox=sandbox,
    )
    started = time.perf_counter()
    try:
        with Suite(suite_options) as suite:
            results = suite.run()
    except PluginError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # no traceback for users; the message says what broke
        raise click.ClickException(
            f"the suite could not run: {type(exc).__name__}: {exc}"
        ) from None
    seconds = time.perf_counter() - started
    failed = sum(r.failed for r in results)
    if junit_path is not None:
        write_junit(results, junit_path, name=f"cdp-tiktok conformance {mapping_dir}")
    if as_json:
        click.echo(results_json(results, directory=str(mapping_dir), seconds=round(seconds, 2)))
    else:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console = Console(width=120)
        print_report(results, console, verbose=verbose)
        verdict = "FAILED" if failed else "OK"
        click.echo(
            f"{verdict}: {len(results)} checks, {failed} failed, in {seconds:.1f} s "
            f"({mapping_dir})",
            err=bool(failed),
        )
    if failed:
        sys.exit(1)

"""The whole conformance suite for one mapping directory, as a list of check results.

:class:`Suite` exposes each check on its own (the pytest plugin runs them as separate
items); :meth:`Suite.run` runs them all in order: mapping files (the checks of
``cdp-tiktok validate``) and case files, golden cases, property checks per rule, the
plugin contract, and optionally the sandbox round trip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cdp_tiktok.conformance.cases import (
    DEFAULT_PIXEL,
    GoldenCase,
    case_files,
    cases_dir,
    load_cases,
)
from cdp_tiktok.conformance.results import CheckResult
from cdp_tiktok.conformance.runner import CaseRunner
from cdp_tiktok.mapping.problems import MappingLoadError, Problem
from cdp_tiktok.settings import TikTokSettings

if TYPE_CHECKING:
    from cdp_tiktok.conformance.properties import RuleTarget
    from cdp_tiktok.host import Host


@dataclass(frozen=True)
class SuiteOptions:
    """What to check and how hard.

    ``settings`` are the base destination settings (their ``mappings`` is replaced by
    ``mapping_dir``; an empty ``event_source_id`` becomes the test pixel). ``examples``
    is the number of generated messages per rule; ``seed`` ``None`` means the fixed
    derandomized seed; ``thorough`` means more examples and failing examples shrunk to
    smallest ones.
    """

    mapping_dir: Path
    settings: TikTokSettings = field(default_factory=TikTokSettings)
    cases: Path | None = None
    examples: int | None = None
    thorough: bool = False
    seed: int | None = None
    sandbox: bool = False
    plugins: tuple[object, ...] = ()
    load_entry_points: bool = True


class Suite:
    """The checks of one mapping directory; close it (or use ``with``) when done."""

    def __init__(self, options: SuiteOptions) -> None:
        from cdp_tiktok.conformance.properties import DEFAULT_EXAMPLES, THOROUGH_EXAMPLES

        self.options = options
        settings = dataclasses.replace(options.settings, mappings=options.mapping_dir)
        if not settings.event_source_id:
            settings = dataclasses.replace(settings, event_source_id=DEFAULT_PIXEL)
        self.settings = settings
        self.examples = options.examples or (
            THOROUGH_EXAMPLES if options.thorough else DEFAULT_EXAMPLES
        )
        self.cases_dir = options.cases or cases_dir(options.mapping_dir)
        self.runner = CaseRunner(
            settings, plugins=options.plugins, load_entry_points=options.load_entry_points
        )
        self._mapping_errors: bool | None = None

    # --- the parts ----------------------------------------------------------------

    @cached_property
    def host(self) -> Host:
        """A host with the suite's settings and plugins (no identity store)."""
        from cdp_tiktok.host import Host

        host = Host(
            self.settings,
            plugins=self.options.plugins,
            load_entry_points=self.options.load_entry_points,
            identity=None,
        )
        with contextlib.suppress(MappingLoadError):  # reported by check_mappings
            self.runner.share_mapping_sets(host)
        return host

    @cached_property
    def mapping_dirs(self) -> list[Path]:
        """The mapping directory plus the directories plugins register."""
        return [self.options.mapping_dir, *self.host.mapping_dirs]

    @cached_property
    def _loaded_cases(self) -> tuple[list[GoldenCase], list[Problem]]:
        return load_cases(case_files(self.cases_dir))

    @property
    def cases(self) -> list[GoldenCase]:
        """The valid golden cases."""
        return self._loaded_cases[0]

    def check_mappings(self) -> list[CheckResult]:
        """The checks of ``cdp-tiktok validate`` on the mapping files, and the case files."""
        from cdp_tiktok.mapping.engine import validate_directory

        started = time.perf_counter()
        files = CheckResult("mappings", "mapping files", where=str(self.options.mapping_dir))
        problems = validate_directory(
            self.mapping_dirs, filters=self.host.filters, settings=self.settings
        )
        for problem in problems:
            (files.fail if problem.severity == "error" else files.warn)(str(problem))
        self._mapping_errors = files.failed
        files.seconds = time.perf_counter() - started
        cases = CheckResult("mappings", "golden case files", where=str(self.cases_dir))
        case_problems = self._loaded_cases[1]
        for problem in case_problems:
            cases.fail(str(problem))
        if not case_files(self.cases_dir):
            cases.warn(f"{self.cases_dir}: no golden case files (*.yaml)")
        return [files, cases]

    def run_case(self, case: GoldenCase) -> CheckResult:
        """Run one golden case."""
        return self.runner.run(case)

    @cached_property
    def rule_targets(self) -> list[RuleTarget]:
        """Every rule with the settings and compiled set its property check uses."""
        from cdp_tiktok.conformance.properties import rule_targets

        return rule_targets(
            self.mapping_dirs, self.settings, self.host.filters, sets=self.runner.mapping_sets
        )

    def check_rule(self, target: RuleTarget) -> CheckResult:
        """The property checks of one rule, plus a warning when no golden case covers it."""
        from cdp_tiktok.conformance.properties import check_rule

        result = check_rule(
            target,
            max_examples=self.examples,
            seed=self.options.seed,
            shrink=self.options.thorough,
        )
        covered = {name for case in self.cases for name in case.rules or ()}
        if target.rule.name not in covered:
            result.warn(f"rule {target.rule.name!r}: no golden case names it in `rule`")
        return result

    def check_plugins(self) -> list[CheckResult]:
        """Every registered plugin against the hook contract."""
        from cdp_tiktok.conformance.contract import check_plugins, sample_messages

        messages = sample_messages(case.input for case in self.cases if case.refused is None)
        return check_plugins(self.host, messages)

    def round_trip(self) -> list[CheckResult]:
        """Every case's output through the local sandbox (run the cases first)."""
        from cdp_tiktok.conformance.roundtrip import round_trip

        return round_trip(self.runner.outputs, self.settings.partner_name)

    # --- all of it ----------------------------------------------------------------

    def results(self) -> Iterator[CheckResult]:
        """Every check, in order; later checks are skipped when mapping files have errors."""
        yield from self.check_mappings()
        if self._mapping_errors:
            yield CheckResult("case", "*", "skipped", ["mapping files have errors: fix them first"])
            return
        for case in self.cases:
            yield self.run_case(case)
        try:
            targets = self.rule_targets
        except MappingLoadError as exc:
            yield CheckResult("rule", "*", "failed", [str(p) for p in exc.problems])
            return
        for target in targets:
            yield self.check_rule(target)
        yield from self.check_plugins()
        if self.options.sandbox:
            yield from self.round_trip()

    def run(self, on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
        """Run every check; call ``on_result`` as each finishes."""
        out = []
        for result in self.results():
            out.append(result)
            if on_result is not None:
                on_result(result)
        return out

    def close(self) -> None:
        """Close the hosts the suite built."""
        self.runner.close()
        if "host" in self.__dict__:
            self.host.close()

    def __enter__(self) -> Suite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

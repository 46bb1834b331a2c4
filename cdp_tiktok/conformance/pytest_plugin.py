"""A pytest plugin: run the conformance suite inside a user's own ``pytest`` run.

Enabled only when a mapping directory is given, on the command line
(``--cdp-tiktok-mappings=DIR``) or in the ini file (``cdp_tiktok_mappings = DIR``,
relative to the ini file). Then it adds one test item per check, named like the
command's JUnit names: ``mappings[mapping files]``, ``mappings[golden case files]``,
``case[<case name>]``, ``rule[<rule name>]`` (the property checks of one rule) and
``plugin[<plugin name>]``. ``-k`` selects among them as usual.

Disabled, it adds nothing and imports nothing beyond this module (the suite is
imported when the first item is collected), so it costs a run nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cdp_tiktok.conformance.results import CheckResult
    from cdp_tiktok.conformance.suite import Suite

OPTION = "--cdp-tiktok-mappings"
INI = "cdp_tiktok_mappings"
_SUITE = pytest.StashKey["Suite"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the command-line and ini options."""
    group = parser.getgroup("cdp-tiktok", "cdp_tiktok conformance suite")
    group.addoption(
        OPTION,
        metavar="DIR",
        help="Run the cdp_tiktok conformance suite on mapping directory DIR "
        "(one test per golden case, rule and plugin).",
    )
    group.addoption(
        "--cdp-tiktok-thorough",
        action="store_true",
        default=False,
        help="More generated examples per rule (as `cdp-tiktok conformance --thorough`).",
    )
    parser.addini(INI, "Mapping directory to run the cdp_tiktok conformance suite on.", default="")


def _directory(config: pytest.Config) -> Path | None:
    given = config.getoption(OPTION)
    if given:
        return Path(given).resolve()
    configured = str(config.getini(INI) or "").strip()
    if not configured:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / configured).resolve()


class ConformanceError(Exception):
    """A conformance check failed; the message holds its detail lines."""


class ConformanceItem(pytest.Item):
    """One conformance check run as a test."""

    def __init__(self, *, check: Callable[[], CheckResult], where: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._check = check
        self._where = where

    def runtest(self) -> None:
        """Run the check; fail with its details, warn with its warnings."""
        result = self._check()
        if result.failed:
            raise ConformanceError("\n".join(result.details))
        if result.status == "warning":
            import warnings

            for line in result.details:
                warnings.warn(line, UserWarning, stacklevel=1)
        if result.status == "skipped":
            pytest.skip("; ".join(result.details) or "skipped")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The check's detail lines, without a traceback."""
        if isinstance(excinfo.value, ConformanceError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the case or rule is (file and line when known)."""
        path, _, line = self._where.rpartition(":")
        if path and line.isdigit():
            return Path(path), int(line) - 1, self.name
        return self.path, None, self.name


class ConformanceCollector(pytest.Collector):
    """Collects the checks of one mapping directory."""

    def collect(self) -> Iterator[ConformanceItem]:
        """One item per check; a suite that cannot be set up gives one failing item."""
        suite = _suite(self.config)

        def item(name: str, check: Callable[[], CheckResult], where: str = "") -> ConformanceItem:
            return ConformanceItem.from_parent(self, name=name, check=check, where=where)

        mapping_results: dict[str, CheckResult] = {}

        def mapping_check(name: str) -> Callable[[], CheckResult]:
            def run() -> CheckResult:
                if not mapping_results:
                    mapping_results.update((r.name, r) for r in suite.check_mappings())
                return mapping_results[name]

            return run

        yield item("mappings[mapping files]", mapping_check("mapping files"))
        yield item("mappings[golden case files]", mapping_check("golden case files"))
        for case in suite.cases:
            yield item(f"case[{case.name}]", _bind(suite.run_case, case), case.where)
        from cdp_tiktok.mapping.problems import MappingLoadError

        try:
            targets = suite.rule_targets
        except MappingLoadError as exc:
            problems = "\n".join(str(p) for p in exc.problems)
            yield item("rule[*]", lambda: _failed("rule", "*", problems))
            targets = []
        for target in targets:
            yield item(
                f"rule[{target.rule.name}]", _bind(suite.check_rule, target), target.rule.where
            )
        plugin_results: dict[str, CheckResult] = {}
        for name, _ in suite.host.pm.list_name_plugin():

            def plugin_check(_name: str = name) -> CheckResult:
                if not plugin_results:
                    plugin_results.update((r.name, r) for r in suite.check_plugins())
                return plugin_results[_name]

            yield item(f"plugin[{name}]", plugin_check)


def _bind(function: Callable[[Any], CheckResult], argument: Any) -> Callable[[], CheckResult]:
    return lambda: function(argument)


def _failed(kind: str, name: str, detail: str) -> CheckResult:
    from cdp_tiktok.conformance.results import CheckResult

    return CheckResult(kind, name, "failed", [detail])


def _suite(config: pytest.Config) -> Suite:
    suite = config.stash.get(_SUITE, None)
    if suite is None:
        from cdp_tiktok.conformance.suite import Suite, SuiteOptions

        directory = _directory(config)
        assert directory is not None
        suite = Suite(SuiteOptions(directory, thorough=config.getoption("--cdp-tiktok-thorough")))
        config.stash[_SUITE] = suite
    return suite


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the conformance items (before ``-k``/``-m`` deselection runs)."""
    directory = _directory(config)
    if directory is None:
        return
    if not directory.is_dir():
        raise pytest.UsageError(f"{OPTION}/{INI}: {directory} is not a directory")
    collector = ConformanceCollector.from_parent(
        session, name="cdp-tiktok-conformance", nodeid="cdp-tiktok-conformance"
    )
    added = list(collector.collect())
    items.extend(added)
    # Counted in "N collected" like collected items.
    report = pytest.CollectReport(collector.nodeid, "passed", None, list(added))
    config.hook.pytest_collectreport(report=report)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the suite's hosts."""
    suite = config.stash.get(_SUITE, None)
    if suite is not None:
        suite.close()

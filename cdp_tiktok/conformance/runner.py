"""Run golden cases through a real :class:`~cdp_tiktok.host.Host`.

One host per distinct settings is built and its compiled mapping set reused; every case
gets a fresh in-memory identity store, so ``before`` messages of one case never enrich
another. A case's output is compared with :func:`~cdp_tiktok.conformance.diff.compare`
and checked against TikTok's request schema.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cdp_tiktok.conformance.cases import GoldenCase
from cdp_tiktok.conformance.diff import compare
from cdp_tiktok.conformance.results import CheckResult
from cdp_tiktok.events import MapResult, OutgoingEvent
from cdp_tiktok.identity import MemoryIdentityStore
from cdp_tiktok.mapping.engine import MappingSet
from cdp_tiktok.messages import MessageError, validate_message
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.payload import build_request, validate_event, validate_request

if TYPE_CHECKING:
    from cdp_tiktok.host import Host

MAX_DIFFERENCES = 20


class CaseRunner:
    """Runs cases for one base configuration; close it (or use ``with``) when done."""

    def __init__(
        self,
        settings: TikTokSettings,
        *,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        mapping_sets: dict[TikTokSettings, MappingSet] | None = None,
    ) -> None:
        self.settings = settings
        self.mapping_sets = {} if mapping_sets is None else mapping_sets
        """Compiled mapping sets by settings, shared with whoever else needs them."""
        self._plugins = tuple(plugins)
        self._load_entry_points = load_entry_points
        self._hosts: dict[TikTokSettings, Host] = {}
        self._results: list[MapResult] = []
        self.outputs: dict[str, list[OutgoingEvent]] = {}
        """The events each case produced, by case name (for the sandbox round trip)."""

    def host_for(self, settings: TikTokSettings) -> Host:
        """The host for ``settings`` (built once; raises MappingLoadError/PluginError)."""
        host = self._hosts.get(settings)
        if host is None:
            from cdp_tiktok.host import Host

            host = Host(
                settings,
                plugins=self._plugins,
                load_entry_points=self._load_entry_points,
                identity=None,
            )
            self.share_mapping_sets(host)
            for destination in host.destinations.values():
                if destination.plugin == "tiktok":
                    destination.state["observer"] = self._observe
            self._hosts[settings] = host
        return host

    def share_mapping_sets(self, host: Host) -> None:
        """Give the host's TikTok destinations the compiled set for their settings,
        compiling (once) the ones not seen yet."""
        from cdp_tiktok.tiktok.destination import TikTokPlugin

        plugin = host.plugin("tiktok")
        if not isinstance(plugin, TikTokPlugin):
            return
        for destination in host.destinations.values():
            if destination.plugin != "tiktok":
                continue
            settings = destination.settings
            if isinstance(settings, TikTokSettings) and settings in self.mapping_sets:
                destination.state["mapping_set"] = self.mapping_sets[settings]
            compiled = plugin.mapping_set(destination)
            if isinstance(settings, TikTokSettings):
                self.mapping_sets.setdefault(settings, compiled)

    def _observe(self, message: Any, result: MapResult) -> None:
        self._results.append(result)

    def _fresh_identity(self, host: Host, settings: TikTokSettings) -> None:
        store = MemoryIdentityStore(settings.identity_ttl_days * 86400.0)
        host.identity = store
        for destination in host.destinations.values():
            destination.state["identity"] = store

    def run(self, case: GoldenCase) -> CheckResult:
        """Run one case; the result's details say each difference by JSON pointer."""
        started = time.perf_counter()
        result = CheckResult("case", case.name, where=case.where)
        try:
            self._run(case, result)
        except Exception as exc:  # a case must never crash the suite
            result.fail(f"{case.where}: running the case raised {type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - started
        return result

    def _run(self, case: GoldenCase, result: CheckResult) -> None:
        settings = case.settings_over(self.settings)
        host = self.host_for(settings)
        self._fresh_identity(host, settings)
        for index, before in enumerate(case.before):
            try:
                host.process(before)
            except MessageError as exc:
                result.fail(f"{case.where}: before[{index}] is not a valid message: {exc}")
                return
        self._results.clear()
        try:
            valid = validate_message(case.input)
        except MessageError as exc:
            if case.refused is None:
                result.fail(f"{case.where}: the input was refused: {exc}")
            elif case.refused not in str(exc):
                result.fail(
                    f"{case.where}: refused, but the error does not contain {case.refused!r}: {exc}"
                )
            return
        if case.refused is not None:
            result.fail(
                f"{case.where}: expected the input to be refused ({case.refused!r}), "
                "but it was accepted"
            )
            return
        events = host.process(valid, validated=True)
        self.outputs[case.name] = events
        self._check_output(case, settings, events, result)

    def _check_output(
        self,
        case: GoldenCase,
        settings: TikTokSettings,
        events: list[OutgoingEvent],
        result: CheckResult,
    ) -> None:
        where = case.where
        rules = case.rules
        fired = [e.rule for e in events]
        if rules is not None and fired != rules:
            result.fail(f"{where}: rule: expected {rules or 'none'}, fired {fired or 'none'}")
        actual = [e.data for e in events]
        differences = compare(case.expected, actual, ignore=case.ignore, absent=case.absent)
        for difference in differences[:MAX_DIFFERENCES]:
            result.fail(f"{where}: {difference}")
        if len(differences) > MAX_DIFFERENCES:
            result.fail(f"{where}: … and {len(differences) - MAX_DIFFERENCES} more differences")
        warnings = [w for r in self._results for w in r.warnings]
        for text in case.warnings:
            if not any(text in w for w in warnings):
                shown = "; ".join(warnings) or "none"
                result.fail(f"{where}: no warning contains {text!r} (warnings: {shown})")
        if case.dropped_keys is not None:
            dropped: dict[str, int] = {}
            for r in self._results:
                for reason, count in r.dropped_keys.items():
                    dropped[reason] = dropped.get(reason, 0) + count
            if dropped != case.dropped_keys:
                result.fail(f"{where}: dropped_keys: expected {case.dropped_keys}, got {dropped}")
        if result.failed and warnings and not case.warnings:
            result.details.append(f"{where}: the mapping warned: {'; '.join(warnings)}")
        for index, event in enumerate(events):
            for problem in validate_event(event.data, event.key.event_source, index=index):
                result.fail(f"{where}: output does not match TikTok's schema: {problem}")
            body = build_request(event.key, [event.data], settings.partner_name)
            for problem in validate_request(body, names=True):
                result.fail(f"{where}: request does not match TikTok's schema: {problem}")
            if case.envelope is not None:
                envelope = {k: body.get(k) for k in case.envelope}
                for difference in compare(case.envelope, envelope):
                    result.fail(f"{where}: envelope of event {index}: {difference}")

    def close(self) -> None:
        """Close every host built."""
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()

    def __enter__(self) -> CaseRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

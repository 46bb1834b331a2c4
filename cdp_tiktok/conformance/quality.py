"""The match-quality report: how well a sample of real messages will match at TikTok.

Maps every message of the sample exactly as ``send`` would (validation, routing,
identity enrichment from earlier identify calls in the sample, in memory only) and
counts, per TikTok event name, the events carrying each match key, those with at least
two strong keys, and the reasons keys were dropped
(:attr:`~cdp_tiktok.events.MapResult.dropped_keys`). Only counts leave this module:
never a value.

Strong keys are :data:`STRONG_KEYS`: identifiers that single out one person or one ad
click. ``ttp`` (a browser cookie) and ``ip`` + ``user_agent`` help, but only
probabilistically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

KEYS: Final = ("email", "phone", "external_id", "ttclid", "ttp", "ip+user_agent")
STRONG_KEYS: Final = ("email", "phone", "external_id", "ttclid")
TOP_REASONS = 5


def keys_of(data: Mapping[str, Any]) -> set[str]:
    """The report's keys an event's ``user`` object carries."""
    user = data.get("user")
    if not isinstance(user, Mapping):
        return set()
    found = {key for key in KEYS[:5] if user.get(key)}
    if user.get("ip") and user.get("user_agent"):
        found.add("ip+user_agent")
    return found


@dataclass
class EventStats:
    """Counts for one TikTok event name."""

    count: int = 0
    keys: Counter[str] = field(default_factory=Counter)
    two_strong: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, shares (0..1) and the top drop reasons."""
        share = (lambda n: round(n / self.count, 4)) if self.count else (lambda n: 0.0)
        return {
            "count": self.count,
            "keys": {
                key: {"count": self.keys[key], "share": share(self.keys[key])} for key in KEYS
            },
            "two_strong_keys": {"count": self.two_strong, "share": share(self.two_strong)},
            "dropped": dict(self.dropped.most_common(TOP_REASONS)),
        }


@dataclass
class QualityReport:
    """The whole report: per event name, plus messages that produced nothing or were
    invalid."""

    events: dict[str, EventStats] = field(default_factory=dict)
    messages: int = 0
    invalid: int = 0
    without_event: int = 0
    dropped_without_event: Counter[str] = field(default_factory=Counter)

    def add(self, events: Iterable[Mapping[str, Any]], dropped: Mapping[str, int]) -> None:
        """Count one message's events and the keys dropped while mapping it."""
        self.messages += 1
        names = []
        for data in events:
            name = str(data.get("event"))
            stats = self.events.setdefault(name, EventStats())
            stats.count += 1
            found = keys_of(data)
            stats.keys.update(found)
            if len(found & set(STRONG_KEYS)) >= 2:
                stats.two_strong += 1
            names.append(name)
        if not names:
            self.without_event += 1
            self.dropped_without_event.update(dropped)
        for name in dict.fromkeys(names):
            self.events[name].dropped.update(dropped)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "messages": self.messages,
            "invalid": self.invalid,
            "without_event": self.without_event,
            "dropped_without_event": dict(self.dropped_without_event.most_common(TOP_REASONS)),
            "strong_keys": list(STRONG_KEYS),
            "events": {name: s.as_dict() for name, s in sorted(self.events.items())},
        }


def build_report(
    messages: Iterable[Any], host: Any, on_invalid: Callable[[Exception], None] | None = None
) -> QualityReport:
    """Map ``messages`` (validated dicts, or :class:`~cdp_tiktok.messages.MessageError`
    for invalid ones, passed to ``on_invalid``) through ``host`` and count. ``host`` is a
    :class:`~cdp_tiktok.host.Host` without an outbox."""
    from cdp_tiktok.events import MapResult
    from cdp_tiktok.messages import MessageError

    report = QualityReport()
    results: list[MapResult] = []
    for destination in host.destinations.values():
        if destination.plugin == "tiktok":
            destination.state["observer"] = lambda message, result: results.append(result)
    for message in messages:
        if isinstance(message, MessageError):
            report.invalid += 1
            if on_invalid is not None:
                on_invalid(message)
            continue
        results.clear()
        events = host.process(message, validated=True)
        dropped: Counter[str] = Counter()
        for result in results:
            dropped.update(result.dropped_keys)
        report.add([e.data for e in events], dropped)
    return report

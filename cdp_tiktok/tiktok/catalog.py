"""TikTok event names as versioned data: which names each ``event_source`` accepts.

The lists live in ``catalog.yaml`` beside this module (TikTok changes them: the 2025
renames broke validators that hard-coded the original 14 names). :func:`load_catalog`
reads them once; :meth:`Catalog.check` answers, for one name and one source, whether it
may be sent, with an error or a warning a user can act on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

CATALOG_RESOURCE = "catalog.yaml"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEPARATORS = re.compile(r"[\s_\-]+")


@functools.lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """An event name compared as people write it: case, spaces, ``_`` and ``-`` ignored.

    ``"Order Completed"``, ``"order_completed"``, ``"Order-Completed"`` and
    ``"ORDER COMPLETED"`` share the key ``"ordercompleted"``; ``"ViewContent"`` and
    ``"view_content"`` share ``"viewcontent"``.
    """
    return _SEPARATORS.sub("", name).casefold()


@dataclass(frozen=True, slots=True)
class NameCheck:
    """The verdict on one event name for one ``event_source``.

    ``ok`` says whether the name may be sent. ``error`` (when not ok) and ``warning``
    (when ok but worth a look) are sentences for users. ``canonical``: when ok, the
    name TikTok reports the event under (the replacement of a legacy name); when
    refused, the standard name to use instead if there is one, else ``None``.
    ``kind`` is ``"standard"``, ``"legacy"``, ``"page_view"``, ``"custom"`` or ``None``.
    """

    ok: bool
    error: str | None = None
    warning: str | None = None
    canonical: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class LegacyName:
    """A name TikTok still accepts but no longer documents."""

    name: str
    replacement: str | None
    note: str


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """What one ``event_source`` accepts (see ``catalog.yaml``)."""

    standard: frozenset[str]
    standard_warning: str | None
    legacy: bool
    reserved: bool
    page_view: bool
    custom: bool


class CatalogError(ValueError):
    """The catalog file is malformed."""


class Catalog:
    """An immutable event catalog; build it with :func:`load_catalog`."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        try:
            self.version: str = str(data["version"])
            lists = {k: frozenset(v or ()) for k, v in data["lists"].items()}
            self.legacy: Mapping[str, LegacyName] = {
                name: LegacyName(name, spec.get("replacement"), str(spec.get("note", "")))
                for name, spec in data["legacy"].items()
            }
            self.reserved: Mapping[str, str] = dict(data["reserved"])
            self.page_view_names: frozenset[str] = frozenset(data["page_view"])
            self.sources: Mapping[str, SourcePolicy] = {
                source: SourcePolicy(
                    standard=lists[spec["standard"]],
                    standard_warning=spec.get("standard_warning"),
                    legacy=bool(spec["legacy"]),
                    reserved=bool(spec["reserved"]),
                    page_view=bool(spec["page_view"]),
                    custom=bool(spec["custom"]),
                )
                for source, spec in data["sources"].items()
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise CatalogError(f"malformed event catalog: {exc!r}") from None
        self._lists = lists
        # Lower-cased spelling -> right spelling, per source, to catch re-cased names.
        self._folded: dict[str, dict[str, str]] = {}
        for source, policy in self.sources.items():
            known = sorted(self._known(source, policy))
            folded: dict[str, str] = {}
            for name in known:
                folded.setdefault(name.lower(), name)
            self._folded[source] = folded
        self._checks: dict[tuple[str, str, bool], NameCheck] = {}
        # name_key -> catalog spelling of the names a source accepts as standard (and
        # legacy, where it takes them); page views and reserved names are not among them.
        self._by_key: dict[str, dict[str, str]] = {}
        for source, policy in self.sources.items():
            keyed: dict[str, str] = {}
            for name in sorted(policy.standard | (set(self.legacy) if policy.legacy else set())):
                keyed.setdefault(name_key(name), name)
            self._by_key[source] = keyed

    def _known(self, source: str, policy: SourcePolicy) -> set[str]:
        names = set(policy.standard)
        if policy.legacy:
            names |= set(self.legacy)
        if policy.page_view:
            names |= self.page_view_names
        return names

    def standard(self, event_source: str) -> frozenset[str]:
        """The standard names ``event_source`` accepts (legacy and page-view excluded).

        Raises ``KeyError`` for an unknown source.
        """
        return self.sources[event_source].standard

    def standard_spelling(self, name: str, event_source: str) -> str | None:
        """The standard (or legacy) event name of ``event_source`` that ``name`` spells in
        any case or separators (``"view_content"`` -> ``"ViewContent"``,
        ``"complete_payment"`` -> ``"CompletePayment"``), else ``None``. Reserved names
        and page views are never returned; an unknown source gives ``None``."""
        keyed = self._by_key.get(event_source)
        return None if keyed is None else keyed.get(name_key(name))

    def check(self, name: str, event_source: str, *, custom: bool = False) -> NameCheck:
        """Whether ``name`` may be sent as an event of ``event_source``.

        Standard names pass; legacy names pass with a warning naming the new one;
        page-view names pass on ``web`` only; reserved names are refused with the name
        TikTok re-maps them to; a name that differs from a known one only by case is
        refused with the right spelling; any other name is refused unless ``custom``
        is true and the source allows custom events. Results are memoized.
        """
        memo_key = (name, event_source, custom)
        found = self._checks.get(memo_key)
        if found is None:
            found = self._check(name, event_source, custom)
            if len(self._checks) < 100_000:
                self._checks[memo_key] = found
        return found

    def _check(self, name: str, source: str, custom: bool) -> NameCheck:
        policy = self.sources.get(source)
        if policy is None:
            return NameCheck(
                False,
                error=f"unknown event_source {source!r} (expected one of "
                f"{', '.join(self.sources)})",
            )
        if not isinstance(name, str) or not name:
            return NameCheck(False, error="event name must be a non-empty string")
        if name in policy.standard:
            return NameCheck(True, warning=policy.standard_warning, canonical=name, kind="standard")
        if policy.legacy and name in self.legacy:
            legacy = self.legacy[name]
            hint = f"use {legacy.replacement}" if legacy.replacement else "avoid it"
            return NameCheck(
                True,
                warning=f"{name} is a legacy TikTok event name ({legacy.note}); {hint}",
                canonical=legacy.replacement or name,
                kind="legacy",
            )
        if name in self.page_view_names:
            if policy.page_view:
                return NameCheck(True, canonical=name, kind="page_view")
            return NameCheck(
                False, error=f"{name} (page view) is web-only; event_source is {source}"
            )
        if policy.reserved and name in self.reserved:
            target = self.reserved[name]
            return NameCheck(
                False,
                error=f"{name} is reserved by TikTok on {source} (re-mapped to {target}); "
                f"send {target} instead",
                canonical=target,
            )
        right = self._folded[source].get(name.lower())
        if right is not None:
            return NameCheck(
                False,
                error=f"{name!r} is not a known event name for event_source {source}: names "
                f"are case-sensitive; did you mean {right!r}?",
                canonical=right,
            )
        elsewhere = sorted(s for s, p in self.sources.items() if s != source and name in p.standard)
        if not custom:
            where = f" ({name} is a standard {'/'.join(elsewhere)} event)" if elsewhere else ""
            return NameCheck(
                False,
                error=f"{name!r} is not a standard event for event_source {source}{where}; "
                "declare it as a custom event to send it",
            )
        if not policy.custom:
            return NameCheck(False, error=f"{source} events must be standard: {name!r} is not")
        if name != name.strip() or _CONTROL.search(name):
            return NameCheck(
                False,
                error=f"custom event name {name!r} has surrounding spaces or control characters",
            )
        return NameCheck(True, canonical=name, kind="custom")


@functools.cache
def load_catalog() -> Catalog:
    """The packaged catalog (``catalog.yaml``), parsed once per process."""
    text = (
        resources.files("cdp_tiktok.tiktok").joinpath(CATALOG_RESOURCE).read_text(encoding="utf-8")
    )
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise CatalogError(f"{CATALOG_RESOURCE}: expected a mapping")
    return Catalog(data)

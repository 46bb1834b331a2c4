"""Mapping sets: load and validate mapping directories, map messages to TikTok events.

:func:`load_mapping_set` compiles every ``*.yaml``/``*.yml`` file of the given
directories once (JSON Schema, templates, triggers, catalog); :meth:`MappingSet.map`
then turns one validated Segment message into zero or more :class:`OutgoingEvent`.
Files are independent: each has its own ``defaults``, ``derive`` and ``match`` mode, and
every file may contribute events for the same message. Rule names are unique across
the set.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from cdp_tiktok.events import BatchKey, MapResult, OutgoingEvent
from cdp_tiktok.identity import fill_user
from cdp_tiktok.mapping.builder import Node, SpecCompiler, field_of
from cdp_tiktok.mapping.codegen import object_builder
from cdp_tiktok.mapping.coerce import applies, coercer_for, required_fields
from cdp_tiktok.mapping.compiler import MESSAGE_FIELDS, SETTINGS_FIELDS, Compiler, EvalError, Value
from cdp_tiktok.mapping.filters import ABSENT, present
from cdp_tiktok.mapping.loader import load_yaml_recovering
from cdp_tiktok.mapping.problems import MappingLoadError, Problem, Reporter
from cdp_tiktok.mapping.triggers import Trigger, compile_trigger
from cdp_tiktok.matchkeys import MatchKeyNormalizer, MatchKeyPolicy
from cdp_tiktok.packaged_schemas import packaged_schema, packaged_validator
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.catalog import name_key

DocPath = tuple[str | int, ...]
StoredKeys = Mapping[str, Sequence[str]]

#: Top-level fields of a ``data[]`` item a mapping writes, in output order.
OUTPUT_FIELDS: Final = (
    "event_time", "event_id", "user", "properties", "page", "app", "ad", "lead",
    "limited_data_use",
)  # fmt: skip
OBJECT_FIELDS: Final = frozenset({"user", "properties", "page", "app", "ad", "lead"})
RULE_KEYS: Final = frozenset(
    {"name", "description", "when", "event", "custom", "sources", "derive"}
)
_CANDIDATE_CACHE: Final = 4096


def file_schema() -> dict[str, Any]:
    """The JSON Schema of a mapping file (``schema.json``, shipped with the package)."""
    return packaged_schema("cdp_tiktok.mapping", "schema.json")


def _validator() -> jsonschema.protocols.Validator:
    return packaged_validator("cdp_tiktok.mapping", "schema.json")


@dataclass(frozen=True)
class Derive:
    """Fields filled from the built event when the rule did not map them."""

    content_ids: bool = False
    num_items: bool = False
    currency: str | None = None

    def apply(self, properties: dict[str, Any]) -> None:
        """Fill ``content_ids``/``num_items`` from ``contents`` and a default currency."""
        contents = properties.get("contents")
        if contents and isinstance(contents, list):
            if self.content_ids and "content_ids" not in properties:
                ids = [c["content_id"] for c in contents if "content_id" in c]
                if ids:
                    properties["content_ids"] = ids
            if self.num_items and "num_items" not in properties:
                total = 0
                for item in contents:
                    total += item.get("quantity", 1) if isinstance(item, dict) else 1
                properties["num_items"] = total
        if self.currency and "value" in properties and "currency" not in properties:
            properties["currency"] = self.currency


@dataclass(eq=False)
class Rule:
    """One compiled rule. ``event`` is the literal TikTok name, or ``None`` when
    ``event_name`` computes it per message (checked against the catalog at run time)."""

    name: str
    file: str
    line: int
    event: str | None
    event_name: Value | None
    custom: bool
    sources: frozenset[str] | None
    active: bool
    trigger: Trigger
    build: Callable[[Mapping[str, Any], list[str]], Any]
    derive: Derive

    @property
    def where(self) -> str:
        """``file:line`` of the rule."""
        return f"{self.file}:{self.line}"


@dataclass
class RuleFile:
    """The compiled rules of one file, with its match mode and candidate index.

    The index maps an exact event name (``event == …``/``event in […]``) and a
    normalized one (``event is named …``, by :func:`name_key`) to rule positions, so
    finding a message's candidates costs one or two dictionary reads plus the rules that
    test no event name, never a scan over every rule; results are cached per
    ``(type, event)``.
    """

    path: str
    first: bool
    rules: list[Rule]
    _candidates: dict[tuple[Any, Any], tuple[Rule, ...]] = field(default_factory=dict)
    _by_event: dict[str, list[int]] = field(default_factory=dict)
    _by_key: dict[str, list[int]] = field(default_factory=dict)
    _any_event: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for position, rule in enumerate(self.rules):
            if not rule.active:
                continue
            trigger = rule.trigger
            if trigger.events is not None:
                for name in trigger.events:
                    self._by_event.setdefault(name, []).append(position)
            elif trigger.event_keys is not None:
                for key in trigger.event_keys:
                    self._by_key.setdefault(key, []).append(position)
            else:
                self._any_event.append(position)

    def candidates(self, message_type: Any, event: Any) -> tuple[Rule, ...]:
        """The active rules whose index key admits ``(type, event)``, in file order."""
        cache_key = (message_type, event)
        found = self._candidates.get(cache_key)
        if found is None:
            key = name_key(event) if isinstance(event, str) else None
            positions = list(self._any_event)
            if isinstance(event, str):
                positions += self._by_event.get(event, ())
                positions += self._by_key.get(key or "", ())
            rules = self.rules
            found = tuple(
                rules[p]
                for p in sorted(set(positions))
                if rules[p].trigger.admits(message_type, event, key)
            )
            if len(self._candidates) < _CANDIDATE_CACHE:
                self._candidates[cache_key] = found
        return found


class MappingSet:
    """Compiled mapping files for one destination and settings; immutable, reusable.

    :meth:`map` is deterministic: the same message (and stored keys) always gives the
    same events. ``problems`` holds the warnings found at load.
    """

    def __init__(
        self,
        files: list[RuleFile],
        *,
        settings: TikTokSettings,
        destination: str,
        problems: list[Problem],
    ) -> None:
        self.files = files
        self.settings = settings
        self.problems = problems
        self.key = BatchKey(
            destination, settings.event_source, settings.event_source_id, settings.test_event_code
        )
        self.normalizer = MatchKeyNormalizer(
            MatchKeyPolicy(
                default_region=settings.default_phone_region,
                infer_region=settings.infer_phone_region,
            )
        )
        from cdp_tiktok.tiktok.catalog import load_catalog

        self._catalog = load_catalog()
        self._required = required_fields(
            settings.event_source, require_page_url=settings.require_page_url
        )

    @property
    def rules(self) -> list[Rule]:
        """Every rule, in load order."""
        return [rule for f in self.files for rule in f.rules]

    def map(
        self,
        message: Mapping[str, Any],
        *,
        stored_keys: StoredKeys | Callable[[], StoredKeys] | None = None,
        explain: bool = False,
    ) -> MapResult:
        """Map one validated message to TikTok events.

        Each file evaluates its candidate rules in order and stops after the first that
        fires when the file says ``match: first``. ``stored_keys`` (a mapping, or a
        function returning one, called only when an event lacks email, phone or
        external_id) fills those keys; keys on the event win. With ``explain``, the
        result says for every rule why it fired or not.
        """
        events: list[OutgoingEvent] = []
        warnings: list[str] = []
        result = MapResult(events, warnings, [], {}, {})
        message_type = message.get("type")
        event = message.get("event")
        if not isinstance(event, str):
            event = None
        matched = False
        for rule_file in self.files:
            candidates = rule_file._candidates.get((message_type, event))
            if candidates is None:
                candidates = rule_file.candidates(message_type, event)
            if not candidates and not explain:
                continue
            if explain:
                self._explain_index(rule_file, candidates, result)
            fired: Rule | None = None
            for rule in candidates:
                if fired is not None:
                    if not explain:
                        break
                    result.explain.append(
                        f"rule {rule.name!r} ({rule.where}): not evaluated "
                        f"(match: first, rule {fired.name!r} fired)"
                    )
                    continue
                if rule.trigger.rest is not None:
                    try:
                        hit = rule.trigger.test_rest(message)
                    except EvalError as exc:
                        warnings.append(f"rule {rule.name}: trigger: {exc}; treated as false")
                        hit = False
                    if not hit:
                        if explain:
                            result.explain.append(
                                f"rule {rule.name!r} ({rule.where}): trigger false: "
                                f"{rule.trigger.source}"
                            )
                        continue
                matched = True
                before = len(warnings)
                data = self._build(rule, message, result)
                if data is None:
                    # The rule fired but its event cannot be sent: with match: first no
                    # later rule may stand in for it (docs/mapping.md, "match").
                    if explain:
                        reason = "; ".join(warnings[before:]) or "no event sent"
                        result.explain.append(
                            f"rule {rule.name!r} ({rule.where}): fired, but no event: {reason}"
                        )
                else:
                    events.append(OutgoingEvent(self.key, data, rule.name))
                    if explain:
                        result.explain.append(
                            f"rule {rule.name!r} ({rule.where}): fired -> {data['event']}"
                        )
                if rule_file.first:
                    fired = rule
        if stored_keys is not None and events:
            self._enrich(result, stored_keys, explain)
        if explain and not events:
            result.explain.append(
                "no TikTok event: a rule fired but its event could not be sent"
                if matched
                else "no TikTok event: no rule fired"
            )
        return result

    def _explain_index(
        self, rule_file: RuleFile, candidates: tuple[Rule, ...], result: MapResult
    ) -> None:
        for rule in rule_file.rules:
            if rule in candidates:
                continue
            if not rule.active:
                sources = ", ".join(sorted(rule.sources or ()))
                result.explain.append(
                    f"rule {rule.name!r} ({rule.where}): not active for event_source "
                    f"{self.settings.event_source} (sources: {sources})"
                )
                continue
            parts = []
            if rule.trigger.types is not None:
                parts.append(f"type in {sorted(rule.trigger.types)}")
            if rule.trigger.events is not None:
                parts.append(f"event in {sorted(rule.trigger.events)}")
            if rule.trigger.event_keys is not None:
                parts.append(f"event named {sorted(rule.trigger.event_keys)}")
            result.explain.append(
                f"rule {rule.name!r} ({rule.where}): not a candidate (index: {' and '.join(parts)})"
            )

    def _event_name(
        self, rule: Rule, message: Mapping[str, Any], warnings: list[str]
    ) -> str | None:
        if rule.event is not None:
            return rule.event
        assert rule.event_name is not None
        try:
            name = rule.event_name(message)
        except EvalError as exc:
            warnings.append(f"rule {rule.name}: event: {exc}; no event sent")
            return None
        if not isinstance(name, str) or not present(name):
            warnings.append(f"rule {rule.name}: event name is missing; no event sent")
            return None
        verdict = self._catalog.check(name, self.settings.event_source, custom=rule.custom)
        if not verdict.ok:
            warnings.append(f"rule {rule.name}: {verdict.error}; no event sent")
            return None
        legacy = self._catalog.legacy.get(name) if verdict.kind == "legacy" else None
        if legacy is not None and legacy.replacement:
            # TikTok converts a legacy name itself; sending the new one keeps reporting
            # under one name (docs/mapping.md, event names).
            warnings.append(
                f"rule {rule.name}: {name} is a legacy TikTok event name ({legacy.note}); "
                f"sent as {legacy.replacement}"
            )
            return legacy.replacement
        return name

    def _build(
        self, rule: Rule, message: Mapping[str, Any], result: MapResult
    ) -> dict[str, Any] | None:
        warnings = result.warnings
        name = rule.event
        if name is None:
            name = self._event_name(rule, message, warnings)
            if name is None:
                return None
        data: dict[str, Any] = {"event": name}
        built = rule.build(message, warnings)
        if built is not ABSENT:
            data.update(built)
            raw_user = built.get("user")
            if raw_user is not None:
                keys = self.normalizer.normalize_user(raw_user, message)
                if keys.dropped:
                    dropped = result.dropped_keys
                    for reason, count in keys.dropped.items():
                        dropped[reason] = dropped.get(reason, 0) + count
                if keys.phone_regions:
                    regions = result.phone_regions
                    for label, count in keys.phone_regions.items():
                        regions[label] = regions.get(label, 0) + count
                if keys.user:
                    data["user"] = keys.user
                else:
                    del data["user"]
            properties = built.get("properties")
            if properties is not None:
                rule.derive.apply(properties)
        if "event_time" not in data:
            warnings.append(f"rule {rule.name}: event_time is missing; no event sent")
            return None
        page = data.get("page")
        if page is not None and "url" not in page:
            del data["page"]  # a referrer alone is no page: TikTok's page needs its url
        for holder, key in self._required:
            if key not in data.get(holder, ()):
                setting = " (require_page_url)" if holder == "page" else ""
                warnings.append(
                    f"rule {rule.name}: {self.settings.event_source} events need "
                    f"{holder}.{key}{setting} and the message gives none; no event sent"
                )
                return None
        return data

    def _enrich(
        self,
        result: MapResult,
        stored_keys: StoredKeys | Callable[[], StoredKeys],
        explain: bool,
    ) -> None:
        events = result.events
        stored: StoredKeys | None = None
        for index, event in enumerate(events):
            data = event.data
            user = data.get("user")
            if user is not None and "email" in user and "phone" in user and "external_id" in user:
                continue
            if stored is None:
                stored = stored_keys() if callable(stored_keys) else stored_keys
                if not stored:
                    return
            # the user object of this message's own event is filled in place
            had_user = user is not None
            if user is None:
                user = {}
            filled = fill_user(user, cast(Mapping[str, list[str]], stored))
            if filled and not had_user:
                events[index] = OutgoingEvent(event.key, _with_user(data, user), event.rule)
            if filled and explain:
                result.explain.append(
                    f"rule {event.rule!r}: {', '.join(filled)} filled from the identity store"
                )


def _with_user(data: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """``data`` (which has no ``user``) with ``user`` in its place of the output order
    (``data``'s keys are in that order, as :meth:`MappingSet._build` makes them)."""
    merged = {**data, "user": user}
    return {key: merged[key] for key in _EVENT_KEYS if key in merged}


_EVENT_KEYS: Final = ("event", *OUTPUT_FIELDS)


# --- loading -----------------------------------------------------------------------------


def _mapping_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def _where(data: Any, path: DocPath) -> str:
    """A readable location: ``rule 'x': user.email`` or ``defaults: page``."""
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        rules = data.get("rules") if isinstance(data, dict) else None
        name = None
        if isinstance(rules, list) and path[1] < len(rules) and isinstance(rules[path[1]], dict):
            name = rules[path[1]].get("name")
        head = f"rule {name!r}" if isinstance(name, str) else f"rules[{path[1]}]"
        rest = path[2:]
    elif path:
        head, rest = str(path[0]), path[1:]
    else:
        return "the file"
    tail = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest).lstrip(".")
    return f"{head}: {tail}" if tail else head


def _schema_problems(data: Any, report: Reporter) -> set[int] | None:
    """Report schema errors; return the indexes of the rules that have some, or
    ``None`` when the file has errors outside its rules (nothing can be compiled)."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.path])
    broken: set[int] = set()
    whole_file = False
    for error in errors:
        _report_schema_error(data, error, report)
        path = tuple(error.absolute_path)
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            broken.add(path[1])
        else:
            whole_file = True
    return None if whole_file else broken


def _report_schema_error(data: Any, error: ValidationError, report: Reporter) -> None:
    path: DocPath = tuple(error.absolute_path)
    where = _where(data, path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = sorted(schema.get("properties", {}))

        for key in error.instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            report.error((*path, key), f"{where}: unknown key {key!r}{hint}")
        return
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        typos = [k for k in error.instance if difflib.get_close_matches(k, [missing], n=1)]
        if not typos:  # a typo'd key is reported once, as an unknown key
            report.error(path, f"{where}: {error.message}")
        return
    if error.validator == "anyOf" and error.context:
        deepest = best_match(error.context)
        sub = tuple(deepest.absolute_path)
        if sub and sub != path:
            _report_schema_error(data, deepest, report)
            return
        report.error(
            path,
            f"{where}: not a valid value (text expression, number, boolean, null, list of "
            "alternatives, object, {for, item} loop or {list: [...]})",
        )
        return
    report.error(path, f"{where}: {error.message}")


def _merge(
    defaults: Mapping[str, Any], rule: Mapping[str, Any], rule_at: DocPath
) -> dict[str, tuple[Any, DocPath, bool]]:
    """Output fields of a rule: ``name -> (spec, doc path, from_rule)``; object fields
    merge key by key with the defaults (``null`` removes an inherited key)."""
    merged: dict[str, tuple[Any, DocPath, bool]] = {}
    for key in OUTPUT_FIELDS:
        in_rule = key in rule
        in_defaults = key in defaults
        if key in OBJECT_FIELDS and (in_rule or in_defaults):
            base = defaults.get(key) if in_defaults else None
            own = rule.get(key) if in_rule else None
            if in_rule and own is None:
                continue  # `user: null` drops the whole inherited object
            fields: dict[str, tuple[Any, DocPath, bool]] = {}
            if isinstance(base, dict):
                for sub, spec in base.items():
                    fields[sub] = (spec, ("defaults", key, sub), False)
            if isinstance(own, dict):
                for sub, spec in own.items():
                    fields[sub] = (spec, (*rule_at, key, sub), True)
            merged[key] = (fields, (*rule_at, key) if in_rule else ("defaults", key), in_rule)
        elif in_rule:
            merged[key] = (rule[key], (*rule_at, key), True)
        elif in_defaults:
            merged[key] = (defaults[key], ("defaults", key), False)
    return merged


class _FileCompiler:
    """Compiles one parsed file into a :class:`RuleFile`, reporting every problem."""

    def __init__(
        self, compiler: Compiler, settings: TikTokSettings, report: Reporter, data: dict[str, Any]
    ) -> None:
        self.compiler = compiler
        self.settings = settings
        self.report = report
        self.data = data
        from cdp_tiktok.tiktok.catalog import load_catalog

        self.catalog = load_catalog()
        self.roots = MESSAGE_FIELDS | {"settings"}
        self._inherited_gaps: set[tuple[str, str]] = set()

    def derive(self, raw: Any, base: Derive) -> Derive:
        if not isinstance(raw, dict):
            return base
        return dataclasses.replace(
            base, **{k: raw[k] for k in ("content_ids", "num_items", "currency") if k in raw}
        )

    def compile(self, valid: Sequence[int]) -> RuleFile:
        data = self.data
        first = data.get("match", "first") == "first"
        file_derive = self.derive(data.get("derive"), Derive())
        defaults = data.get("defaults") or {}
        if defaults:  # validate the defaults once, even in a file without rules
            self._fields(defaults, {}, ("defaults",), "defaults", self.settings.event_source, False)
        rules: list[Rule] = []
        for index, raw in enumerate(data.get("rules") or []):
            if index not in valid:
                continue
            rule = self._rule(raw, ("rules", index), defaults, file_derive)
            if rule is not None:
                rules.append(rule)
        if first:
            self._unreachable(rules)
        return RuleFile(self.report.file, first, rules)

    def _rule(
        self, raw: dict[str, Any], at: DocPath, defaults: Mapping[str, Any], derive: Derive
    ) -> Rule | None:
        report = self.report
        name = raw["name"]
        sources = frozenset(raw["sources"]) if "sources" in raw else None
        active = sources is None or self.settings.event_source in sources
        source = self.settings.event_source if active else sorted(sources or ())[0]
        custom = bool(raw.get("custom", False))
        trigger = compile_trigger(self.compiler, raw["when"], report, (*at, "when"), self.roots)
        event, event_name = self._event(raw["event"], (*at, "event"), custom, sources)
        fields = self._fields(defaults, raw, at, f"rule {name}", source, True)
        if active:
            self._check_sendable(name, _merge(defaults, raw, at), at)
        if trigger is None or fields is None or (event is None and event_name is None):
            return None
        return Rule(
            name=name,
            file=report.file,
            line=report.line_of(at),
            event=event,
            event_name=event_name,
            custom=custom,
            sources=sources,
            active=active,
            trigger=trigger,
            build=object_builder(
                [field_of(key, node, co, label) for key, node, co, label in fields]
            ),
            derive=self.derive(raw.get("derive"), derive),
        )

    def _event(
        self, raw: str, at: DocPath, custom: bool, sources: frozenset[str] | None
    ) -> tuple[str | None, Value | None]:
        if "{{" in raw or "{%" in raw:
            value = self.compiler.compile_text(raw, self.report, at, self.roots)
            if value is None:
                return None, None
            constant = getattr(value, "constant", ABSENT)
            if not isinstance(constant, str):
                return None, value
            raw = constant
        ok = True
        for source in sorted(sources or {self.settings.event_source}):
            verdict = self.catalog.check(raw, source, custom=custom)
            if not verdict.ok:
                hint = ""
                if verdict.canonical is None and not custom:
                    close = difflib.get_close_matches(
                        raw, sorted(self.catalog.standard(source)), n=1
                    )
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.report.error(at, f"event {raw!r} ({source}): {verdict.error}{hint}")
                ok = False
            elif verdict.warning and source == self.settings.event_source:
                self.report.warning(at, f"event {raw!r} ({source}): {verdict.warning}")
        return (raw if ok else None), None

    def _fields(
        self,
        defaults: Mapping[str, Any],
        rule: Mapping[str, Any],
        at: DocPath,
        label: str,
        source: str,
        is_rule: bool,
    ) -> tuple[tuple[str, Node, Callable[[Any], Any] | None, str], ...] | None:
        specs = SpecCompiler(self.compiler, self.report, label)
        merged = _merge(defaults, rule, at) if is_rule else _merge({}, defaults, ("defaults",))
        out: list[tuple[str, Node, Callable[[Any], Any] | None, str]] = []
        ok = True
        for key, (spec, path, from_rule) in merged.items():
            if not applies(key, source):
                if from_rule and is_rule:
                    self.report.warning(path, f"{key} is not sent for event_source {source}")
                continue
            node: Node | None
            if key in OBJECT_FIELDS:
                fields = {}
                for sub, (sub_spec, sub_path, sub_from_rule) in spec.items():
                    target = f"{key}.{sub}"
                    if not applies(target, source):
                        if sub_from_rule and is_rule:
                            self.report.warning(
                                sub_path, f"{target} is not sent for event_source {source}"
                            )
                        continue
                    fields[sub] = (sub_spec, sub_path)
                node = specs.object(fields, key, self.roots, 1, typed=key != "user")
                coerce = None
            else:
                node = specs.value(spec, path, key, self.roots)
                coerce = coercer_for(key)
            if node is None:
                ok = False
                continue
            out.append((key, node, coerce, f"{label}: {key}"))
        return tuple(out) if ok else None

    def _check_sendable(
        self, name: str, merged: Mapping[str, tuple[Any, DocPath, bool]], at: DocPath
    ) -> None:
        """Report as an error a rule whose event can never be sent for the configured
        event source: no source at all for ``event_time`` or for a required field."""
        source = self.settings.event_source
        time_spec, _, time_from_rule = merged.get("event_time", (None, at, False))
        if not self._has_source(time_spec):
            if time_from_rule:
                self.report.error(
                    at, f"rule {name!r} can never send an event: no source for event_time"
                )
            elif ("event_time", "") not in self._inherited_gaps:  # once for the whole file
                self._inherited_gaps.add(("event_time", ""))
                self.report.error(
                    at,
                    f"rule {name!r} can never send an event: no source for event_time in the "
                    "rule or the defaults (nor in any rule of this file that maps none; add "
                    "`event_time: timestamp` to defaults)",
                )
        required = required_fields(source, require_page_url=self.settings.require_page_url)
        for holder, key in required:
            spec: Any = merged.get(holder, ({},))[0]
            sub, sub_at, from_rule = (
                spec.get(key, (None, at, True)) if isinstance(spec, dict) else (None, at, True)
            )
            if self._has_source(sub):
                continue
            unset = _unset_setting(sub, self.compiler.settings)
            why = f" (setting {unset} is not set)" if unset else ""
            if from_rule:
                self.report.error(
                    at,
                    f"rule {name!r} can never send an event: {source} events need "
                    f"{holder}.{key} and the rule has no source for it{why}",
                )
            elif (holder, key) not in self._inherited_gaps:  # once for the whole file
                self._inherited_gaps.add((holder, key))
                self.report.error(
                    sub_at,
                    f"defaults: {holder}.{key} has no source{why}, so no rule inheriting it "
                    f"can send an event: {source} events need {holder}.{key}",
                )

    def _has_source(self, spec: Any) -> bool:
        """Whether a value spec can ever give a value (``null`` and unset settings cannot)."""
        if spec is None:
            return False
        if isinstance(spec, list):
            return any(self._has_source(item) for item in spec)
        return _unset_setting(spec, self.compiler.settings) is None

    def _unreachable(self, rules: list[Rule]) -> None:
        for index, later in enumerate(rules):
            for earlier in rules[:index]:
                if not (earlier.active and later.active) or earlier.trigger.rest is not None:
                    continue
                if _covers(earlier.trigger.types, later.trigger.types) and _covers_events(
                    earlier.trigger, later.trigger
                ):
                    self.report.warning(
                        ("rules", index),
                        f"rule {later.name!r} can never fire: rule {earlier.name!r} "
                        f"(line {earlier.line}) fires first for every message it matches "
                        "(match: first)",
                    )
                    break


def _unset_setting(spec: Any, settings: Mapping[str, Any]) -> str | None:
    """``settings.<name>`` when ``spec`` is exactly that path and the setting is unset."""
    if isinstance(spec, str) and spec.startswith("settings."):
        name = spec.removeprefix("settings.").strip()
        if name in settings and settings[name] is None:
            return f"{name}"
    return None


def _covers(wide: frozenset[str] | None, narrow: frozenset[str] | None) -> bool:
    if wide is None:
        return True
    return narrow is not None and narrow <= wide


def _covers_events(wide: Trigger, narrow: Trigger) -> bool:
    """Whether every event name ``narrow``'s index admits is admitted by ``wide``'s."""
    if wide.events is None and wide.event_keys is None:
        return True
    if wide.events is not None:  # exact names never cover a normalized comparison
        return narrow.events is not None and narrow.events <= wide.events
    assert wide.event_keys is not None
    if narrow.events is not None:
        return all(name_key(e) in wide.event_keys for e in narrow.events)
    return narrow.event_keys is not None and narrow.event_keys <= wide.event_keys


def _settings_constants(settings: TikTokSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in SETTINGS_FIELDS}


def _compile_all(
    dirs: Sequence[Path],
    filters: Mapping[str, Callable[..., Any]],
    settings: TikTokSettings,
) -> tuple[list[RuleFile], list[Problem]]:
    compiler = Compiler(plugin_filters=filters, settings=_settings_constants(settings))
    problems: list[Problem] = []
    for name in compiler.refused_filters:
        problems.append(
            Problem("<plugins>", 0, f"plugin filter {name!r} shadows a built-in filter; refused")
        )
    files: list[RuleFile] = []
    seen: dict[str, str] = {}
    empty: list[int] = []  # where in ``problems`` a directory without files is reported
    for directory in dirs:
        directory = Path(directory)
        if directory.is_file():
            paths = [directory]
        elif not directory.is_dir():
            problems.append(Problem(str(directory), 0, "not a directory of mapping files"))
            continue
        else:
            paths = _mapping_files(directory)
        if not paths:
            empty.append(len(problems))
            problems.append(
                Problem(str(directory), 0, "no mapping files (*.yaml, *.yml)", "warning")
            )
        for path in paths:
            rule_file, file_problems = _compile_file(path, compiler, settings)
            problems.extend(file_problems)
            if rule_file is None:
                continue
            for rule in rule_file.rules:
                if rule.name in seen:
                    problems.append(
                        Problem(
                            rule.file,
                            rule.line,
                            f"rule name {rule.name!r} is already used at {seen[rule.name]}",
                        )
                    )
                else:
                    seen[rule.name] = rule.where
            files.append(rule_file)
    if empty and len(empty) == len(dirs) and not any(p.severity == "error" for p in problems):
        # Nothing anywhere to map with: every message would silently become no event.
        for index in empty:
            problems[index] = Problem(
                problems[index].file,
                0,
                "no mapping files (*.yaml, *.yml): no message would become an event",
            )
    return files, problems


def _compile_file(
    path: Path, compiler: Compiler, settings: TikTokSettings
) -> tuple[RuleFile | None, list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), 0, f"cannot read: {exc}")]
    located = load_yaml_recovering(text)
    report = Reporter(str(path), located.lines)
    for line, message in located.errors:
        report.problems.append(Problem(str(path), line, message))
    rule_file: RuleFile | None = None
    if located.data is not None:
        broken = _schema_problems(located.data, report)
        if broken is not None:
            rules = located.data.get("rules") or []
            # Rules with schema errors are left out so the others are still checked.
            valid = [i for i in range(len(rules)) if i not in broken]
            rule_file = _FileCompiler(compiler, settings, report, located.data).compile(valid)
    unique = list(dict.fromkeys(report.problems))
    unique.sort(key=lambda p: p.line)
    if any(p.severity == "error" for p in unique):
        rule_file = None
    return rule_file, unique


def validate_directory(
    dirs: Sequence[Path],
    *,
    filters: Mapping[str, Callable[..., Any]] | None = None,
    settings: TikTokSettings | None = None,
) -> list[Problem]:
    """Every problem (errors and warnings) of every mapping file in ``dirs`` (a path may
    also name one file), in file and line order. Never raises for bad files."""
    _, problems = _compile_all(list(dirs), filters or {}, settings or TikTokSettings())
    return problems


def load_mapping_set(
    dirs: Sequence[Path],
    *,
    filters: Mapping[str, Callable[..., Any]] | None = None,
    settings: TikTokSettings,
    destination: str = "TikTok",
) -> MappingSet:
    """Load and compile ``dirs`` once. Raises :class:`MappingLoadError` listing every
    problem when any file has an error; warnings are kept in ``MappingSet.problems``."""
    files, problems = _compile_all(list(dirs), filters or {}, settings)
    if any(p.severity == "error" for p in problems):
        raise MappingLoadError(problems)
    return MappingSet(files, settings=settings, destination=destination, problems=problems)

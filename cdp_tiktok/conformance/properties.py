"""Property checks, one per rule: hypothesis-generated messages that reach the rule.

For every rule, messages are drawn from :func:`cdp_tiktok.testing.strategies.messages_for`
with the rule's trigger index (its types, events and name keys), for the rule's event source (its
own when it is not active for the configured one), so the rule really fires; the check
reports how many examples fired it. For every example it checks:

1. mapping never raises for a valid message, and never modifies the message;
2. every event the rule produced matches TikTok's request schema (event and request);
3. no raw e-mail, phone or external id of the input appears anywhere in the output;
4. the same input gives the same output (mapped twice from fresh copies);
5. ``event_id`` and ``event_time`` follow the declared defaults (the rule's own spec,
   else the file's ``defaults``), when that spec is a path or a list of paths.

Runs are bounded and repeatable: a fixed seed (``derandomize``) unless a seed is given,
no example database, ``max_examples`` per rule.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdp_tiktok.conformance.leaks import find_leaks
from cdp_tiktok.conformance.results import CheckResult
from cdp_tiktok.events import MapResult
from cdp_tiktok.mapping.coerce import CoerceError, coercer_for
from cdp_tiktok.mapping.engine import MappingSet, Rule, load_mapping_set
from cdp_tiktok.mapping.filters import present
from cdp_tiktok.mapping.loader import load_yaml
from cdp_tiktok.messages import MessageError, validate_message
from cdp_tiktok.redaction import redact
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.tiktok.catalog import load_catalog
from cdp_tiktok.tiktok.payload import build_request, validate_event, validate_request

DEFAULT_EXAMPLES = 60
THOROUGH_EXAMPLES = 600
SAMPLE_APP_ID = "1234567890"
SAMPLE_PAGE_URL = "https://shop.example.com/products/42"
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NOT_DECLARED = object()


@dataclass(frozen=True)
class Declared:
    """How a rule says ``event_id``/``event_time`` are filled: a list of paths, ``None``
    (the field is removed), or ``_NOT_DECLARED``/an expression (not checked)."""

    event_id: Any
    event_time: Any


@dataclass
class RuleTarget:
    """A rule, the settings it is checked with, its compiled set and its declarations."""

    rule: Rule
    settings: TikTokSettings
    mapping: MappingSet
    declared: Declared


def settings_for(rule: Rule, base: TikTokSettings) -> TikTokSettings:
    """``base``, switched to the rule's first source when the rule is not active for it,
    with an ``app_id`` for app sources when none is set (TikTok requires one)."""
    settings = base
    if not rule.active and rule.sources:
        settings = dataclasses.replace(settings, event_source=sorted(rule.sources)[0])
    if settings.event_source == "app" and not settings.app_id:
        settings = dataclasses.replace(settings, app_id=SAMPLE_APP_ID)
    return settings


def _paths(spec: Any) -> Any:
    if spec is None:
        return None
    alternatives = spec if isinstance(spec, list) else [spec]
    if all(isinstance(a, str) and _PATH.fullmatch(a.strip()) for a in alternatives):
        return [a.strip() for a in alternatives]
    return _NOT_DECLARED


def _declarations(rule: Rule, texts: dict[str, Any]) -> Declared:
    data = texts.get(rule.file)
    if data is None:
        try:
            data = load_yaml(Path(rule.file).read_text(encoding="utf-8")).data
        except OSError:
            data = None
        texts[rule.file] = data
    if not isinstance(data, dict):
        return Declared(_NOT_DECLARED, _NOT_DECLARED)
    found_defaults = data.get("defaults")
    defaults: dict[str, Any] = found_defaults if isinstance(found_defaults, dict) else {}
    raw = next(
        (r for r in data.get("rules") or [] if isinstance(r, dict) and r.get("name") == rule.name),
        {},
    )
    found: dict[str, Any] = {}
    for key in ("event_id", "event_time"):
        if key in raw:
            found[key] = _paths(raw[key])
        elif key in defaults:
            found[key] = _paths(defaults[key])
        else:
            found[key] = None
    return Declared(found["event_id"], found["event_time"])


def rule_targets(
    dirs: Sequence[Path],
    base: TikTokSettings,
    filters: Mapping[str, Any] | None = None,
    *,
    sets: dict[TikTokSettings, MappingSet] | None = None,
) -> list[RuleTarget]:
    """Every rule of ``dirs``, each with the mapping set compiled for its settings
    (``sets``: compiled sets to reuse and fill, by settings).

    Raises :class:`~cdp_tiktok.mapping.MappingLoadError` when a file has an error.
    """
    sets = {} if sets is None else sets

    def compiled(settings: TikTokSettings) -> MappingSet:
        if settings not in sets:
            sets[settings] = load_mapping_set(dirs, filters=filters, settings=settings)
        return sets[settings]

    texts: dict[str, Any] = {}
    targets = []
    for rule in compiled(base).rules:
        settings = settings_for(rule, base)
        mapping = compiled(settings)
        own = next(r for r in mapping.rules if r.name == rule.name)
        targets.append(RuleTarget(own, settings, mapping, _declarations(own, texts)))
    return targets


def _resolve(message: Mapping[str, Any], settings: TikTokSettings, path: str) -> Any:
    head, *rest = path.split(".")
    value: Any = dataclasses.asdict(settings) if head == "settings" else message.get(head)
    for part in rest:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _expected(message: Mapping[str, Any], settings: TikTokSettings, paths: Any, field: str) -> Any:
    """The value the declared paths give, coerced like the engine; ``_NOT_DECLARED`` when
    it cannot be told (an expression, a value that does not coerce, nothing present)."""
    if paths is _NOT_DECLARED:
        return _NOT_DECLARED
    if paths is None:
        return None
    for path in paths:
        value = _resolve(message, settings, path)
        if present(value):
            try:
                return coercer_for(field)(value)
            except CoerceError:
                return _NOT_DECLARED
    return _NOT_DECLARED


def _example_text(message: Mapping[str, Any]) -> str:
    return json.dumps(redact(message), ensure_ascii=False, sort_keys=True, default=str)


class _Failure(AssertionError):
    pass


def _check_one(target: RuleTarget, message: dict[str, Any]) -> tuple[bool, list[str]]:
    """Check one example; return (the rule fired, failure lines)."""
    rule, settings, mapping = target.rule, target.settings, target.mapping
    try:
        valid = validate_message(message)
    except MessageError:
        return False, []  # not a valid message: nothing is promised for it
    before = copy.deepcopy(valid)
    failures: list[str] = []
    try:
        result: MapResult = mapping.map(valid)
    except Exception as exc:
        return False, [f"mapping raised {type(exc).__name__}: {exc}"]
    if valid != before:
        failures.append("mapping modified the message it was given")
    mine = [e for e in result.events if e.rule == rule.name]
    region = settings.default_phone_region
    for index, event in enumerate(mine):
        for problem in validate_event(event.data, settings.event_source):
            failures.append(f"output does not match TikTok's schema: {problem}")
        body = build_request(event.key, [event.data], settings.partner_name)
        for problem in validate_request(body, names=True):
            failures.append(f"request does not match TikTok's schema: {problem}")
        for leak in find_leaks(valid, event.data, region=region, prefix=f"/events/{index}"):
            failures.append(str(leak))
        for field in ("event_id", "event_time"):
            paths = getattr(target.declared, field)
            want = _expected(valid, settings, paths, field)
            if want is _NOT_DECLARED:
                continue
            got = event.data.get(field)
            if want is None and paths is None and field in event.data:
                failures.append(f"{field}: the rule removes it, but the event has {got!r}")
            elif want is not None and got != want:
                failures.append(
                    f"{field}: declared {' | '.join(paths)} gives {want!r}, the event has {got!r}"
                )
    again = mapping.map(copy.deepcopy(before))
    if [e.data for e in again.events] != [e.data for e in result.events]:
        failures.append("the same input gave a different output the second time")
    return bool(mine), failures


def check_rule(
    target: RuleTarget,
    *,
    max_examples: int = DEFAULT_EXAMPLES,
    seed: int | None = None,
    shrink: bool = False,
) -> CheckResult:
    """Run the property checks of one rule; the result counts examples and firings.

    With ``shrink``, a failing example is reduced to a smallest one first (slower, but
    easier to read); otherwise the first failing example is reported.
    """
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import seed as hypothesis_seed
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from cdp_tiktok.testing.strategies import messages_for, track_messages_named

    rule = target.rule
    result = CheckResult("rule", rule.name, where=rule.where)
    started = time.perf_counter()
    counts = {"examples": 0, "fired": 0}
    last: dict[str, Any] = {}
    trigger = rule.trigger
    strategy = messages_for(trigger.types, trigger.events, trigger.event_keys)
    any_track = "track" in (trigger.types or {"track"})
    if trigger.events is None and not trigger.event_keys and any_track:
        # A rule open to any track event (``event | standard_event is defined``) also
        # gets tracks named as the source's TikTok events, so whether it fires does not
        # hang on how often a hypothesis version happens to draw such a name.
        named = track_messages_named(sorted(load_catalog().standard(target.settings.event_source)))
        strategy = st.one_of(named, strategy)
    if target.settings.event_source == "web":
        strategy = st.tuples(strategy, st.integers(0, 3)).map(_with_page)

    def example(message: dict[str, Any]) -> None:
        counts["examples"] += 1
        fired, failures = _check_one(target, message)
        counts["fired"] += fired
        if failures:
            last["message"], last["failures"] = message, failures
            raise _Failure("; ".join(failures))

    test = given(strategy)(example)
    test = hypothesis_settings(
        max_examples=max_examples,
        derandomize=seed is None,
        database=None,
        deadline=None,
        print_blob=False,
        report_multiple_bugs=False,
        phases=(Phase.generate, Phase.shrink) if shrink else (Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )(test)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    try:
        test()
    except _Failure:
        source = target.settings.event_source
        for failure in last.get("failures", []):
            result.fail(f"rule {rule.name!r} ({rule.where}, {source}): {failure}")
        label = "smallest failing example" if shrink else "failing example"
        result.details.append(f"{label}: {_example_text(last['message'])}")
    except Exception as exc:
        result.fail(f"rule {rule.name!r}: the check itself failed: {type(exc).__name__}: {exc}")
    result.counts = {"examples": counts["examples"], "fired": counts["fired"]}
    if not result.failed and counts["fired"] == 0:
        result.warn(
            f"rule {rule.name!r} ({rule.where}) never fired in {counts['examples']} generated "
            "examples: its trigger needs more than its type and event; cover it with golden cases"
        )
    result.seconds = time.perf_counter() - started
    return result


def _with_page(drawn: tuple[dict[str, Any], int]) -> dict[str, Any]:
    """Web events need ``page.url``: give three examples in four a page when they lack
    one (the others check the no-page path)."""
    message, draw = drawn
    context = message.get("context")
    if draw == 0 or (isinstance(context, dict) and "page" in context):
        return message
    context = dict(context) if isinstance(context, dict) else {}
    context["page"] = {"url": SAMPLE_PAGE_URL}
    return {**message, "context": context}

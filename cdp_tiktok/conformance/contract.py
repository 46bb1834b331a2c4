"""Check every registered plugin against the hook contract of :mod:`cdp_tiktok.hookspecs`.

Each implementation is called on its own (so a failure names the plugin), with sample
messages (the golden inputs plus generated messages of every call type) for every
destination. Checked, per hook family:

* call hooks (``cdp_on_*``): the answer is ``None`` or a list of
  :class:`~cdp_tiktok.events.OutgoingEvent` (``None`` for other plugins' destinations, a
  list for the plugin's own); every event is a JSON-ready TikTok ``data[]`` item that
  matches the request schema; hashed match keys are 64-hex SHA-256 and no raw e-mail,
  phone or external id of the message appears in it; the message is not modified; the
  only exception raised is :data:`DOCUMENTED_ERRORS`;
* registration hooks: return ``None`` and raise nothing;
* delivery hooks: ``cdp_batch_key`` answers a :class:`~cdp_tiktok.events.BatchKey` or
  ``None``, ``cdp_encode_batch`` bytes or ``None``, ``cdp_classify_response`` a
  :class:`~cdp_tiktok.events.Verdict` or ``None``, for a table of responses; none raises.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from cdp_tiktok.conformance.leaks import find_leaks
from cdp_tiktok.conformance.results import CheckResult
from cdp_tiktok.destination import Destination
from cdp_tiktok.events import BatchKey, OutgoingEvent, Verdict
from cdp_tiktok.mapping.problems import MappingLoadError
from cdp_tiktok.matchkeys import KEY_RULES, is_sha256_hex
from cdp_tiktok.messages import MESSAGE_TYPES, MessageError, validate_message
from cdp_tiktok.tiktok.payload import validate_event

if TYPE_CHECKING:
    from cdp_tiktok.host import Host

DOCUMENTED_ERRORS: Final[tuple[type[BaseException], ...]] = (MappingLoadError,)
"""What a call hook may raise for a valid message: its mapping files are broken."""

HASHED_KEYS: Final = tuple(key for key, rule in KEY_RULES.items() if rule.hashed)
GENERATED_PER_TYPE = 12
MAX_DETAILS_PER_PLUGIN = 25

#: (status_code, body, error, batch_size) answers every classifier must take.
RESPONSES: Final[tuple[tuple[int | None, bytes, str | None, int], ...]] = (
    (200, b'{"code":0,"message":"OK","request_id":"r1"}', None, 3),
    (200, b'{"code":40002,"message":"Invalid field","request_id":"r2"}', None, 3),
    (200, b'{"code":40100,"message":"Too many requests"}', None, 1),
    (401, b'{"code":40105,"message":"Access token is incorrect"}', None, 2),
    (500, b"<html>oops</html>", None, 2),
    (503, b"", None, 1),
    (None, b"", "timeout", 4),
    (200, b"not json", None, 1),
)


def sample_messages(extra: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Valid messages to call hooks with: ``extra`` (e.g. golden inputs) plus a fixed,
    derandomized sample of generated messages of every call type."""
    from hypothesis import HealthCheck, Phase, given, settings

    from cdp_tiktok.testing.strategies import valid_messages

    messages: list[dict[str, Any]] = []
    for message in extra:
        try:
            messages.append(validate_message(message))
        except MessageError:
            continue
    for kind in MESSAGE_TYPES:
        drawn: list[dict[str, Any]] = []

        run = settings(
            max_examples=GENERATED_PER_TYPE,
            derandomize=True,
            database=None,
            deadline=None,
            phases=(Phase.generate,),
            suppress_health_check=list(HealthCheck),
        )(given(valid_messages([kind]))(_collector(drawn)))
        run()
        messages.extend(validate_message(m) for m in drawn)
    return messages


def _collector(into: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def collect(message: dict[str, Any]) -> None:
        into.append(message)

    return collect


class _Plugin:
    def __init__(self, name: str, started: float) -> None:
        self.result = CheckResult("plugin", name)
        self.started = started
        self.seen: set[str] = set()
        self.calls = 0

    def fail(self, text: str, *, about: str = "") -> None:
        """Record a problem once per ``(about, kind of problem)``: the first message
        that shows it is enough to find it."""
        problem = text[len(about) :] if about and text.startswith(about) else text
        key = f"{about.split(', ')[0]}|{problem.split('(')[0][:60]}"
        if key in self.seen:
            return
        self.seen.add(key)
        if len(self.seen) <= MAX_DETAILS_PER_PLUGIN:
            self.result.fail(text)
        elif len(self.seen) == MAX_DETAILS_PER_PLUGIN + 1:
            self.result.fail("… further problems not shown")


def _impls(host: Host, hook: str) -> list[tuple[str, Callable[..., Any], tuple[str, ...]]]:
    caller = getattr(host.pm.hook, hook)
    found = []
    for impl in reversed(caller.get_hookimpls()):
        if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
            continue
        found.append((impl.plugin_name, impl.function, tuple(impl.argnames)))
    return found


def _call(function: Callable[..., Any], argnames: Sequence[str], kwargs: Mapping[str, Any]) -> Any:
    return function(*[kwargs[name] for name in argnames])


def _describe(message: Mapping[str, Any]) -> str:
    kind = message.get("type")
    event = message.get("event")
    label = f"{kind} {event!r}" if kind == "track" else str(kind)
    return f"{label} message {message.get('messageId')}"


def check_plugins(host: Host, messages: Sequence[dict[str, Any]]) -> list[CheckResult]:
    """One result per plugin the host registered, in registration order."""
    started = time.perf_counter()
    plugins: dict[str, _Plugin] = {}

    def plugin(name: str) -> _Plugin:
        if name not in plugins:
            plugins[name] = _Plugin(name, started)
        return plugins[name]

    for name, _ in host.pm.list_name_plugin():
        plugin(name)
    owners = _registration(host, plugin)
    for kind in MESSAGE_TYPES:
        hook = f"cdp_on_{kind}"
        for plugin_name, function, argnames in _impls(host, hook):
            checker = plugin(plugin_name)
            for destination in host.destinations.values():
                for message in messages:
                    if message.get("type") == kind:
                        _check_call(checker, hook, function, argnames, message, destination, owners)
    _delivery(host, plugin, messages)
    results = []
    for checker in plugins.values():
        checker.result.counts = {"calls": checker.calls}
        checker.result.seconds = time.perf_counter() - checker.started
        results.append(checker.result)
    return results


def _registration(host: Host, plugin: Callable[[str], _Plugin]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for hook in ("cdp_register_destinations", "cdp_register_filters", "cdp_register_mapping_dirs"):
        for plugin_name, function, argnames in _impls(host, hook):
            checker = plugin(plugin_name)
            checker.calls += 1

            def register(*args: Any, _hook: str = hook, _plugin: str = plugin_name) -> None:
                if _hook == "cdp_register_destinations" and args:
                    destination = args[0]
                    if isinstance(destination, Destination):
                        owners[destination.name] = _plugin
                    else:
                        plugin(_plugin).fail(
                            f"{_hook}: registered a {type(destination).__name__}, not a Destination"
                        )

            try:
                answer = _call(function, argnames, {"register": register})
            except Exception as exc:
                checker.fail(f"{hook}: raised {type(exc).__name__}: {exc}")
                continue
            if answer is not None:
                checker.fail(f"{hook}: returned {type(answer).__name__}; must return None")
    return owners


def _check_call(
    checker: _Plugin,
    hook: str,
    function: Callable[..., Any],
    argnames: Sequence[str],
    message: dict[str, Any],
    destination: Destination,
    owners: Mapping[str, str],
) -> None:
    checker.calls += 1
    what = f"{hook} for {destination.name!r}, {_describe(message)}"
    fail = functools.partial(checker.fail, about=what)
    before = copy.deepcopy(message)
    try:
        answer = _call(function, argnames, {"message": message, "destination": destination})
    except DOCUMENTED_ERRORS:
        return
    except Exception as exc:
        documented = ", ".join(e.__name__ for e in DOCUMENTED_ERRORS)
        fail(
            f"{what}: raised {type(exc).__name__} ({exc}); a call hook may only raise {documented}"
        )
        return
    finally:
        if message != before:
            fail(f"{what}: modified the message it received")
            message.clear()
            message.update(before)
    own = owners.get(destination.name) == checker.result.name
    if answer is None:
        if own:
            fail(f"{what}: returned None for its own destination; return a list")
        return
    if not own:
        fail(
            f"{what}: answered for a destination of plugin "
            f"{owners.get(destination.name, '?')!r}; return None for other plugins' destinations"
        )
    if not isinstance(answer, list):
        fail(f"{what}: returned {type(answer).__name__}; must return a list or None")
        return
    for index, event in enumerate(answer):
        _check_event(checker, f"{what}: event {index}", event, message)


def _check_event(checker: _Plugin, what: str, event: Any, message: Mapping[str, Any]) -> None:
    fail = functools.partial(checker.fail, about=what)
    if not isinstance(event, OutgoingEvent):
        fail(f"{what}: is a {type(event).__name__}, not an OutgoingEvent")
        return
    if not isinstance(event.key, BatchKey):
        fail(f"{what}: key is a {type(event.key).__name__}, not a BatchKey")
        return
    if event.rule is not None and not isinstance(event.rule, str):
        fail(f"{what}: rule must be text or None")
    data = event.data
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        fail(f"{what}: data must be a dict with an `event` name")
        return
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        fail(f"{what}: data is not JSON-ready: {exc}")
        return
    try:
        problems = validate_event(data, event.key.event_source)
    except ValueError as exc:
        fail(f"{what}: {exc}")
        problems = []
    for problem in problems:
        fail(f"{what}: does not match TikTok's schema: {problem}")
    user = data.get("user")
    if isinstance(user, dict):
        for key in HASHED_KEYS:
            values = user.get(key)
            if values is None:
                continue
            for position, value in enumerate(values if isinstance(values, list) else [values]):
                if not (isinstance(value, str) and is_sha256_hex(value) and value == value.lower()):
                    suffix = f"[{position}]" if isinstance(values, list) else ""
                    fail(f"{what}: user.{key}{suffix} is not a lower-case SHA-256 hash")
    for leak in find_leaks(message, data, prefix="/data"):
        fail(f"{what}: {leak}")


def _delivery(
    host: Host, plugin: Callable[[str], _Plugin], messages: Sequence[dict[str, Any]]
) -> None:
    key = BatchKey("TikTok", "web", "CPIXEL0000000000000A")
    event = OutgoingEvent(key, {"event": "Pageview", "event_time": 1740830400}, None)
    for plugin_name, function, argnames in _impls(host, "cdp_batch_key"):
        checker = plugin(plugin_name)
        checker.calls += 1
        _expect(checker, "cdp_batch_key", function, argnames, {"event": event}, BatchKey)
    for plugin_name, function, argnames in _impls(host, "cdp_encode_batch"):
        checker = plugin(plugin_name)
        checker.calls += 1
        kwargs = {"key": key, "events": [event.data], "partner_name": "cdp_tiktok"}
        _expect(checker, "cdp_encode_batch", function, argnames, kwargs, bytes)
    for plugin_name, function, argnames in _impls(host, "cdp_classify_response"):
        checker = plugin(plugin_name)
        for status, body, error, size in RESPONSES:
            checker.calls += 1
            kwargs = {"status_code": status, "body": body, "error": error, "batch_size": size}
            _expect(
                checker,
                f"cdp_classify_response({status}, {body[:40]!r})",
                function,
                argnames,
                kwargs,
                Verdict,
            )


def _expect(
    checker: _Plugin,
    what: str,
    function: Callable[..., Any],
    argnames: Sequence[str],
    kwargs: Mapping[str, Any],
    kind: type,
) -> None:
    try:
        answer = _call(function, argnames, kwargs)
    except Exception as exc:
        checker.fail(f"{what}: raised {type(exc).__name__}: {exc}")
        return
    if answer is not None and not isinstance(answer, kind):
        checker.fail(
            f"{what}: returned {type(answer).__name__}; must return {kind.__name__} or None"
        )

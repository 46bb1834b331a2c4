"""The plugin contract of cdp_tiktok.

Every hook is a documented no-op specification. Plugins implement them with
:data:`hookimpl`; the host finds plugins through the ``cdp_tiktok`` entry-point group or
direct registration. Hooks are synchronous and pure: the host owns all I/O (outbox,
identity store, HTTP). Hook implementations must not give their parameters defaults:
pluggy would not pass them.

Three families:

* registration hooks, called once when the host starts, each receiving a ``register``
  callback;
* call hooks, one per Segment call type, called once per message and enabled
  destination, returning the TikTok events to deliver;
* delivery hooks, ``firstresult``: the first non-``None`` answer wins, so a user plugin
  can override the built-in delivery plugin (which is registered ``trylast``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cdp_tiktok.delivery.outbox import Outbox
    from cdp_tiktok.destination import Destination
    from cdp_tiktok.events import BatchKey, OutgoingEvent, Verdict
    from cdp_tiktok.identity import IdentityStore

PROJECT = "cdp_tiktok"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Message = dict[str, Any]
"""A validated Segment-spec message (see :mod:`cdp_tiktok.messages`)."""


# --- registration -----------------------------------------------------------------


@hookspec
def cdp_register_destinations(register: Callable[[Destination], None]) -> None:
    """Register the destinations this plugin provides.

    Called once when the host starts, before any message. Call ``register`` once per
    destination. A name already registered is an error that names both plugins.
    """


@hookspec
def cdp_register_filters(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register Jinja filters for the mapping language.

    Called once when mappings are compiled. ``register(name, function)`` makes
    ``{{ value | name }}`` available in every mapping file. The function receives plain
    JSON-like values and must be pure; it runs inside the template sandbox. A name that
    shadows a built-in filter is refused with an error naming the plugin.
    """


@hookspec
def cdp_register_mapping_dirs(register: Callable[[Path], None]) -> None:
    """Register extra directories of mapping files.

    Called once when mappings are loaded. Files in registered directories are loaded
    after the configured mapping directory, in registration order, and validated with
    the same schema; an error names the file and line.
    """


@hookspec
def cdp_register_outbox_backends(register: Callable[[str, Callable[[str], Outbox]], None]) -> None:
    """Register outbox backends by URL scheme.

    Called once per process, the first time an outbox is opened (see
    :func:`cdp_tiktok.backends.open_outbox`). ``register(scheme, factory)``: an outbox url
    whose scheme (the part before ``://``) is ``scheme`` is opened by ``factory(url)``,
    which returns a new :class:`~cdp_tiktok.delivery.outbox.Outbox` or raises
    ``ValueError`` naming the url. A scheme registered twice is an error naming both
    plugins. The built-ins register ``sqlite``, ``memory`` and ``postgresql``.
    """


@hookspec
def cdp_register_identity_stores(
    register: Callable[[str, Callable[[str, float], IdentityStore]], None],
) -> None:
    """Register identity store backends by URL scheme.

    Same contract as :func:`cdp_register_outbox_backends`; ``factory(url, ttl_seconds)``
    returns a new :class:`~cdp_tiktok.identity.IdentityStore` whose entries expire after
    ``ttl_seconds``. The store must keep the privacy guarantees of
    :mod:`cdp_tiktok.identity` (only SHA-256 ids and 64-hex keys at rest).
    """


# --- one hook per Segment call type --------------------------------------------------


@hookspec
def cdp_on_track(message: Message, destination: Destination) -> list[OutgoingEvent] | None:
    """Turn a validated ``track`` message into the events to deliver to ``destination``.

    Called once per message and enabled destination (``integrations`` opt-outs already
    honoured). Return ``None`` when ``destination`` is not this plugin's; return a list
    (possibly empty) otherwise. The message must not be modified. Returned events carry
    only hashed match keys. Raises nothing for a valid message, except
    :class:`~cdp_tiktok.mapping.MappingLoadError` when the destination's mapping files
    are broken (``cdp-tiktok conformance`` checks all of this).
    """


@hookspec
def cdp_on_identify(message: Message, destination: Destination) -> list[OutgoingEvent] | None:
    """Handle a validated ``identify`` message for ``destination``.

    Same contract as :func:`cdp_on_track`. The TikTok destination remembers the user's
    hashed match keys here and, by default, returns no event.
    """


@hookspec
def cdp_on_page(message: Message, destination: Destination) -> list[OutgoingEvent] | None:
    """Turn a validated ``page`` message into events for ``destination``.

    Same contract as :func:`cdp_on_track`.
    """


@hookspec
def cdp_on_screen(message: Message, destination: Destination) -> list[OutgoingEvent] | None:
    """Turn a validated ``screen`` message into events for ``destination``.

    Same contract as :func:`cdp_on_track`.
    """


@hookspec
def cdp_on_group(message: Message, destination: Destination) -> list[OutgoingEvent] | None:
    """Turn a validated ``group`` message into events for ``destination``.

    Same contract as :func:`cdp_on_track`.
    """


@hookspec
def cdp_on_alias(message: Message, destination: Destination) -> list[OutgoingEvent] | None:
    """Handle a validated ``alias`` message for ``destination``.

    Same contract as :func:`cdp_on_track`. The TikTok destination links the two ids in
    its identity store and returns no event.
    """


# --- delivery (firstresult) ------------------------------------------------------------


@hookspec(firstresult=True)
def cdp_batch_key(event: OutgoingEvent) -> BatchKey | None:
    """Return the key that decides which events may share one request.

    Events with equal keys may be batched together; events with different keys never
    are. The built-in answer is ``event.key`` (destination, event_source,
    event_source_id, test_event_code).
    """


@hookspec(firstresult=True)
def cdp_encode_batch(
    key: BatchKey, events: Sequence[dict[str, Any]], partner_name: str | None
) -> bytes | None:
    """Encode one request body for ``events`` (``data[]`` items) sharing ``key``.

    The built-in answer is the TikTok Events API 2.0 envelope, UTF-8 JSON, with
    ``test_event_code`` at top level. Never include the access token.
    """


@hookspec(firstresult=True)
def cdp_classify_response(
    status_code: int | None, body: bytes, error: str | None, batch_size: int
) -> Verdict | None:
    """Classify one delivery attempt.

    ``status_code`` is ``None`` when no HTTP answer arrived (``error`` then says why:
    timeout, connection reset). The built-in answer reads TikTok's body ``code`` before
    the HTTP status; nothing is ever classified as delivered unless TikTok said so.
    """


HOOK_NAMES: Sequence[str] = tuple(
    name for name in dir() if name.startswith("cdp_") and callable(globals()[name])
)
"""Every hook name defined here, for documentation and coverage tests."""

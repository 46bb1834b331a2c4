"""The intake's own settings: write keys, size limits, backlog limits, CORS origins.

Read from the settings file's ``write_keys`` and ``intake`` sections, the
``CDP_TIKTOK_WRITE_KEYS`` variable and ``serve``'s flags. A write key is given as
``name=key`` (the name labels metrics and logs; the key never does) or a bare key
(named ``keyN``, N its position among all the configured keys).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdp_tiktok.ingest.auth import WriteKeys
from cdp_tiktok.settings import SettingsError, read_settings_file
from cdp_tiktok.yamlpos import located

WRITE_KEYS_ENV = "CDP_TIKTOK_WRITE_KEYS"


@dataclass(frozen=True)
class IntakeLimits:
    """Size and backlog limits of the intake (Segment's defaults for sizes)."""

    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_messages: int = 2500
    max_waiting_requests: int = 256
    max_queue_records: int = 1_000_000
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntakeConfig:
    """Everything the HTTP layer needs besides the host and the outbox."""

    write_keys: WriteKeys
    limits: IntakeLimits = IntakeLimits()


_LIMIT_FIELDS = {f.name: f for f in dataclasses.fields(IntakeLimits)}
FLAGS = {
    "max_message_bytes": "--intake-message-bytes",
    "max_batch_bytes": "--intake-batch-bytes",
    "cors_origins": "--cors-origin",
}
"""``serve``'s flag for each limit it has one for (named in errors)."""


def _named(keys: Iterable[str], into: dict[str, str], origin: str) -> None:
    for given in keys:
        text = given.strip()
        if not text:
            continue
        name, sep, key = text.partition("=")
        if not sep:
            name, key = f"key{len(into) + 1}", text
        name, key = name.strip(), key.strip()
        if not name or not key:
            raise SettingsError(f"{origin}: a write key is 'name=key' or a bare key")
        if name in into:
            raise SettingsError(f"{origin}: write key name {name!r} is given twice")
        into[name] = key


def _from_file(file: Path) -> tuple[dict[str, str], dict[str, Any]]:
    text, loaded = read_settings_file(file)
    if not isinstance(loaded, dict):
        return {}, {}
    keys: dict[str, str] = {}
    raw_keys = loaded.get("write_keys")
    if isinstance(raw_keys, dict):
        for name, key in raw_keys.items():
            if not isinstance(key, str) or not key:
                raise SettingsError(
                    located(file, text, ["write_keys", str(name)], "must be a non-empty string")
                )
            keys[str(name)] = key
    elif isinstance(raw_keys, list):
        for index, key in enumerate(raw_keys):
            if not isinstance(key, str):
                raise SettingsError(located(file, text, ["write_keys", index], "must be a string"))
        _named(raw_keys, keys, str(file))
    elif raw_keys is not None:
        raise SettingsError(
            located(file, text, ["write_keys"], "must map source names to keys, or list keys")
        )
    intake = loaded.get("intake")
    limits: dict[str, Any] = {}
    if isinstance(intake, dict):
        for name, value in intake.items():
            if name not in _LIMIT_FIELDS:
                raise SettingsError(located(file, text, ["intake", name], "unknown setting"))
            limits[name] = _limit(
                name, value, lambda r, n=name: located(file, text, ["intake", n], r)
            )
    elif intake is not None:
        raise SettingsError(located(file, text, ["intake"], "must be a mapping"))
    return keys, limits


def _limit(name: str, value: Any, where: Any) -> Any:
    if name == "cors_origins":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(where("must be a list of origins"))
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(where("must be a positive whole number"))
    return value


def load_intake_config(
    *,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    write_keys: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> IntakeConfig:
    """Merge the settings file, ``CDP_TIKTOK_WRITE_KEYS`` and flags (highest last).

    Write keys of every source are kept together (one per source); a name given twice
    is an error. ``None`` overrides are ignored. Raises :class:`SettingsError` with the
    file and line, or the variable / flag, of a bad value.
    """
    keys: dict[str, str] = {}
    limits: dict[str, Any] = {}
    if file is not None:
        keys, limits = _from_file(file)
    environ = os.environ if env is None else env
    _named(environ.get(WRITE_KEYS_ENV, "").split(","), keys, WRITE_KEYS_ENV)
    _named(write_keys, keys, "--write-key")
    for name, value in (overrides or {}).items():
        if value is not None:
            flag = FLAGS.get(name, f"--{name.replace('_', '-')}")
            limits[name] = _limit(name, value, lambda r, f=flag: f"{f}: {r}")
    return IntakeConfig(WriteKeys(keys), IntakeLimits(**limits))

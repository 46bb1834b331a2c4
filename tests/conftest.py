"""Shared test configuration.

* Hypothesis runs with the ``ci`` profile (derandomized: a fixed seed, so a run is
  repeatable) when ``CI`` is set, and with the ``dev`` profile otherwise.
* A test that needs a service (Redis, a free port) skips with a reason when the service
  is absent; with ``CDP_TIKTOK_REQUIRE_SERVICES=1`` (set by ``.ci/run``) such a skip
  becomes a failure, so CI never silently skips what it can run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REQUIRE_SERVICES = os.environ.get("CDP_TIKTOK_REQUIRE_SERVICES") == "1"


def require_service(available: bool, reason: str) -> None:
    """Skip the calling test when a service is absent, or fail when CI requires it."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable (CDP_TIKTOK_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CLI runner in a fresh working directory, with no ``CDP_TIKTOK_*`` credentials or
    stores inherited from the environment (a test file may define its own ``runner``)."""
    monkeypatch.chdir(tmp_path)
    for name in ("ACCESS_TOKEN", "PIXEL_CODE", "OUTBOX", "IDENTITY", "ENDPOINT", "SETTINGS"):
        monkeypatch.delenv(f"CDP_TIKTOK_{name}", raising=False)
    yield CliRunner()

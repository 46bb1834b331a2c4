"""The example third-party plugin, installed with pip, is found and called by the host."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cdp-tiktok-example-leads"

PROBE = """
import json, sys
from cdp_tiktok.host import Host
host = Host(identity=None)
events = host.track(user_id="user_123", event="Form Submitted",
                    properties={"email": " Lead@Example.com ", "lead_id": 991})
other = host.track(user_id="user_123", event="Signed Up")
print(json.dumps({
    "filter": host.filters["micros"]("12500000"),
    "events": [[e.key.destination, e.key.event_source, e.data] for e in events],
    "other": [e.key.destination for e in other],
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip-install the example into a private target directory (not this environment)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source)  # pip builds in the source tree: keep the repo clean
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("CDP_TIKTOK_DISABLE_PLUGINS", None)
    return env


def test_plugins_command_lists_the_installed_example(installed: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cdp_tiktok", "plugins", "--json"],
        env=installed,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    example = plugins["example_leads"]
    assert example["source"].startswith("entry point cdp_tiktok_example_leads")
    assert {"cdp_on_track", "cdp_register_filters", "cdp_register_destinations"} <= set(
        example["hooks"]
    )


def test_host_calls_the_installed_example_hook(installed: dict[str, str]) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=installed, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    out = probe.stdout
    result = json.loads(out)
    assert result["filter"] == 12.5
    leads = [data for dest, source, data in result["events"] if dest == "Example Leads"]
    assert len(leads) == 1
    lead = leads[0]
    assert lead["event"] == "Lead" and lead["lead"]["lead_id"] == "991"
    # hashed by the shared policy: trimmed, lower-cased e-mail; never the raw value
    assert lead["user"]["email"] == [hashlib.sha256(b"lead@example.com").hexdigest()]
    assert "Lead@Example.com" not in out and "lead@example.com" not in out
    assert "Example Leads" not in result["other"]


def test_blocking_the_example_by_environment(installed: dict[str, str]) -> None:
    env = dict(installed, CDP_TIKTOK_DISABLE_PLUGINS="example_leads")
    out = subprocess.run(
        [sys.executable, "-m", "cdp_tiktok", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "example_leads" not in {p["name"] for p in json.loads(out)}


def test_conformance_checks_the_installed_example_against_the_hook_contract(
    installed: dict[str, str],
) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "cdp_tiktok", "conformance", str(ROOT / "mappings"), "--json",
         "--examples", "2"],
        env=dict(installed, CDP_TIKTOK_TRACE_PLUGINS=""),
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr
    results = {r["label"]: r for r in json.loads(checked.stdout)["results"]}
    example = results["plugin[example_leads]"]
    assert example["status"] == "passed" and example["counts"]["calls"] > 50

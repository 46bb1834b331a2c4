"""Several TikTok destinations from one settings file (the ``destinations:`` list):
parsing with located errors, routing by name, per-destination delivery settings, and
``send``, ``map`` and ``serve`` honouring them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.destinations import check_destinations, destination_settings
from cdp_tiktok.host import Host
from cdp_tiktok.mapping.defaults import default_mapping_dir
from cdp_tiktok.sandbox.server import SandboxServer
from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN, SettingsError, load_settings
from tests.helpers_service import PAGE_URL, WRITE_KEY, running_intake
from tests.test_ingest_clients import wait_for_events

SETTINGS = """\
event_source: web
default_page_url: https://shop.example/
destinations:
  - name: shop-us
    pixel_code: CUSPIXEL000000000001
    access_token_env: TOKEN_US
  - name: shop-eu
    pixel_code: CEUPIXEL000000000002
    access_token_env: TOKEN_EU
    mappings: eu-mappings
    test_event_code: TEST123
"""


def order(number: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"user-{number}",
        "event": "Order Completed",
        "messageId": f"order-{number}",
        "properties": {"order_id": str(number), "revenue": 5, "currency": "USD"},
        "context": {"page": {"url": PAGE_URL}},
        **extra,
    }


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    shutil.copytree(default_mapping_dir(), tmp_path / "eu-mappings")
    path = tmp_path / "settings.yaml"
    path.write_text(SETTINGS, encoding="utf-8")
    return path


def test_each_destination_gets_its_own_settings(settings_file: Path) -> None:
    settings = load_settings(file=settings_file, env={})
    env = {"TOKEN_US": "token-us", "TOKEN_EU": "token-eu"}
    built = check_destinations(settings, environ=env)
    assert sorted(built) == ["shop-eu", "shop-us"]
    assert built["shop-us"].event_source_id == "CUSPIXEL000000000001"
    assert built["shop-us"].access_token.reveal() == "token-us"
    assert built["shop-us"].test_event_code is None
    assert built["shop-eu"].access_token.reveal() == "token-eu"
    assert built["shop-eu"].mappings == (settings_file.parent / "eu-mappings").resolve()
    assert built["shop-eu"].test_event_code == "TEST123"
    assert built["shop-eu"].default_page_url == "https://shop.example/"
    assert "token-us" not in repr(built) and "token-eu" not in repr(built)
    sandbox = destination_settings(
        settings, environ=env, access_token=built["shop-us"].access_token
    )
    assert {s.access_token.reveal() for s in sandbox.values()} == {"token-us"}


def test_without_a_list_there_is_one_tiktok_destination() -> None:
    settings = load_settings(env={})
    assert list(destination_settings(settings)) == ["TikTok"]


def test_missing_token_variable_names_the_entry_and_line(settings_file: Path) -> None:
    settings = load_settings(file=settings_file, env={})
    with pytest.raises(SettingsError) as error:
        check_destinations(settings, environ={"TOKEN_US": "x"})
    assert str(error.value).startswith(f"{settings_file}:7: destinations entry 'shop-eu'")
    assert "TOKEN_EU" in str(error.value)
    check_destinations(settings, environ={}, need_credentials=False)


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        (
            "    pixel_code: CEUPIXEL000000000002",
            "    pixle_code: X",
            ":8: destinations[1].pixle_code: unknown key",
        ),
        (
            "    access_token_env: TOKEN_EU",
            "    access_token: secret-value",
            ":9: destinations[1].access_token: an access token never goes in the file",
        ),
        ("name: shop-eu", "name: shop-us", ":7: destinations[1].name: 'shop-us' is given twice"),
        ("name: shop-eu", "name: TikTok", ":7: destinations[1].name: must be"),
        ("    mappings: eu-mappings", "    mappings: nowhere", ":10: destinations[1].mappings:"),
        (
            "    access_token_env: TOKEN_EU",
            "    access_token_env: 9-bad",
            ":9: destinations[1].access_token_env: must be",
        ),
        (
            "    test_event_code: TEST123",
            "    event_source: tv",
            ":11: destinations[1].event_source: must be one of",
        ),
    ],
)
def test_a_bad_list_is_refused_with_file_and_line(
    settings_file: Path, replace: str, by: str, expected: str
) -> None:
    text = settings_file.read_text()
    assert replace in text
    settings_file.write_text(text.replace(replace, by))
    with pytest.raises(SettingsError) as error:
        load_settings(file=settings_file, env={})
    assert str(error.value).startswith(str(settings_file) + expected), str(error.value)
    assert "secret-value" not in str(error.value)


def test_integrations_route_by_destination_name_and_tiktok_for_all(settings_file: Path) -> None:
    settings = load_settings(file=settings_file, env={})
    with Host(settings, identity=None, load_entry_points=False) as host:

        def routed(integrations: dict[str, Any] | None) -> list[tuple[str, str]]:
            message = order(1) if integrations is None else order(1, integrations=integrations)
            return sorted((e.key.destination, e.key.event_source_id) for e in host.process(message))

        both = [("shop-eu", "CEUPIXEL000000000002"), ("shop-us", "CUSPIXEL000000000001")]
        assert routed(None) == both
        assert routed({"shop-eu": False}) == both[1:]
        assert routed({"All": False, "shop-eu": True}) == both[:1]
        assert routed({"TikTok": False}) == []
        assert routed({"All": False, "TikTok Conversions": True}) == both
        assert routed({"TikTok": False, "shop-us": True}) == both[1:]


def test_send_delivers_each_destination_with_its_own_token(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKEN_US", SANDBOX_ACCESS_TOKEN)
    monkeypatch.setenv("TOKEN_EU", "not-the-sandbox-token")
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(order(n)) for n in range(3)) + "\n")
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        result = CliRunner().invoke(
            main,
            [
                "send", str(source), "--settings", str(settings_file), "--endpoint", sandbox.url,
                "--outbox", f"sqlite:///{tmp_path / 'o.db'}", "--identity", "memory://",
            ],
        )  # fmt: skip
        records = sandbox.events()
    # shop-eu's token is refused (40105): that destination stops, its events stay queued.
    assert result.exit_code == 1, result.output
    assert "shop-eu" in result.output and "40105" in result.output
    assert {r["event_source_id"] for r in records} == {"CUSPIXEL000000000001"}
    assert len(records) == 3


def test_map_prints_the_events_of_every_destination(settings_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["map", "--settings", str(settings_file), "-q"], input=json.dumps(order(1))
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2 and {line["event"] for line in lines} == {"Purchase"}


def test_serve_routes_to_both_destinations(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("TOKEN_US", SANDBOX_ACCESS_TOKEN)
    monkeypatch.setenv("TOKEN_EU", SANDBOX_ACCESS_TOKEN)
    with SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox:
        settings = load_settings(
            file=settings_file,
            overrides={
                "endpoint": sandbox.url,
                "outbox": f"sqlite:///{tmp_path / 'o.db'}",
                "identity": "memory://",
            },
        )
        with running_intake(settings) as intake:
            answer = httpx.post(
                intake.url + "/v1/batch",
                json={"batch": [order(1), order(2, integrations={"shop-us": False})]},
                auth=(WRITE_KEY, ""),
            )
            assert answer.json() == {"success": True}
            wait_for_events(sandbox, 3)
            records = sandbox.events()
    sources = sorted((r["event_source_id"], r["test_event_code"]) for r in records)
    assert sources == [
        ("CEUPIXEL000000000002", "TEST123"),
        ("CEUPIXEL000000000002", "TEST123"),
        ("CUSPIXEL000000000001", None),
    ]


def test_worker_needs_each_destinations_token(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDP_TIKTOK_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("TOKEN_US", "token-us")
    monkeypatch.delenv("TOKEN_EU", raising=False)
    result = CliRunner().invoke(
        main,
        ["worker", "--settings", str(settings_file), "--outbox", f"sqlite:///{tmp_path / 'o.db'}"],
    )
    assert result.exit_code == 2
    assert "no access token for destination shop-eu" in result.output
    assert "token-us" not in result.output

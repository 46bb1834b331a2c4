"""``cdp-tiktok serve`` start-up: configuration read once, refused with a located
sentence (exit 2, no traceback) when wrong; write keys from file, variable and flags."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.ingest.config import load_intake_config
from cdp_tiktok.settings import SettingsError, load_settings
from tests.test_ingest_crash import serve_process


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    for name in ("WRITE_KEYS", "SETTINGS", "ACCESS_TOKEN", "PIXEL_CODE"):
        monkeypatch.delenv(f"CDP_TIKTOK_{name}", raising=False)
    return CliRunner()


def test_without_a_write_key_serve_refuses_to_start(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--sandbox", "--port", "0"])
    assert result.exit_code == 2
    assert "no write key" in result.output
    assert "Traceback" not in result.output


def test_without_credentials_serve_refuses_to_start(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--write-key", "k", "--port", "0"])
    assert result.exit_code == 2
    assert "pixel_code" in result.output


def test_a_bad_settings_file_is_refused_with_its_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("write_keys:\n  web: k1\nintake:\n  max_message_bytes: -3\n")
    result = runner.invoke(main, ["serve", "--sandbox", "--settings", str(path), "--port", "0"])
    assert result.exit_code == 2
    assert f"{path}:4: intake.max_message_bytes: must be a positive whole number" in result.output
    path.write_text("intake:\n  max_mesage_bytes: 10\n")
    result = runner.invoke(main, ["serve", "--sandbox", "--settings", str(path), "--port", "0"])
    assert result.exit_code == 2
    assert f"{path}:2: intake.max_mesage_bytes: unknown setting" in result.output


def test_write_keys_merge_file_variable_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "write_keys:\n  web: key-web\n  ios: key-ios\nintake:\n  cors_origins: [https://a.example]\n"
    )
    config = load_intake_config(
        file=path, env={"CDP_TIKTOK_WRITE_KEYS": "android=key-android, key-bare"},
        write_keys=["server=key-server"],
    )  # fmt: skip
    keys = config.write_keys
    assert keys.sources == ["web", "ios", "android", "key4", "server"]
    assert keys.source("key-bare") == "key4"
    assert keys.source("key-server") == "server"
    assert keys.source("key-web ") is None and keys.source("") is None
    assert config.limits.cors_origins == ("https://a.example",)
    assert "key-web" not in repr(keys)
    with pytest.raises(SettingsError, match="'web' is given twice"):
        load_intake_config(file=path, env={}, write_keys=["web=other"])
    # the sections belong to serve: other commands read the same file without complaint
    assert load_settings(file=path, env={}).event_source == "web"


def test_a_real_serve_refuses_an_unknown_key_and_is_ready(tmp_path: Path) -> None:
    from cdp_tiktok.sandbox.server import SandboxServer
    from cdp_tiktok.settings import SANDBOX_ACCESS_TOKEN

    with (
        SandboxServer(access_token=SANDBOX_ACCESS_TOKEN) as sandbox,
        serve_process(tmp_path, sandbox.url) as (_process, url),
    ):
        answer = httpx.post(
            url + "/v1/identify",
            content=json.dumps({"userId": "u", "traits": {"email": "a@b.example"}}),
            headers={"Authorization": "Basic " + base64.b64encode(b"nope:").decode()},
        )
        assert answer.status_code == 401
        assert httpx.get(url + "/ready").json() == {"ready": True}


def test_a_store_that_cannot_be_opened_is_one_sentence(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    result = runner.invoke(
        main,
        ["serve", "--sandbox", "--write-key", "k", "--port", "0",
         "--outbox", f"sqlite:///{tmp_path / 'a-directory.db'}"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot open the outbox or identity store" in result.output
    assert "Traceback" not in result.output


def test_intake_limit_flags_are_checked_and_named(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["serve", "--sandbox", "--write-key", "k", "--intake-batch-bytes", "0"]
    )
    assert result.exit_code == 2
    assert "--intake-batch-bytes: must be a positive whole number" in result.output
    assert "used more than once" not in result.output

"""Settings: precedence, validation with named errors, and a token that never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdp_tiktok.settings import Secret, SettingsError, TikTokSettings, load_settings


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("pixel_code: CFILE\nevent_source: app\nbatch_max_events: 500\n")
    env = {"CDP_TIKTOK_PIXEL_CODE": "CENV", "CDP_TIKTOK_CONCURRENCY": "8"}
    settings = load_settings(
        file=file, env=env, overrides={"event_source": "crm", "pixel_code": None}
    )
    assert settings.event_source_id == "CENV"  # env beats file; a None flag masks nothing
    assert settings.event_source == "crm"  # flag beats file
    assert settings.batch_max_events == 500 and settings.concurrency == 8
    assert settings.page_view_event == "Pageview"  # default


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("pixle_code: C1\n")
    with pytest.raises(SettingsError, match=r"s\.yaml: unknown setting 'pixle_code'"):
        load_settings(file=file, env={})


def test_bad_value_names_setting_and_source() -> None:
    with pytest.raises(SettingsError, match=r"concurrency .from CDP_TIKTOK_CONCURRENCY."):
        load_settings(env={"CDP_TIKTOK_CONCURRENCY": "many"})


def test_validate_names_missing_credentials() -> None:
    with pytest.raises(SettingsError, match="pixel_code"):
        TikTokSettings().validate()
    with pytest.raises(SettingsError, match="access_token"):
        TikTokSettings(event_source_id="C1").validate()
    with pytest.raises(SettingsError, match="batch_max_events"):
        TikTokSettings(batch_max_events=1001).validate(need_credentials=False)
    TikTokSettings().validate(need_credentials=False)


def test_access_token_never_shows() -> None:
    settings = load_settings(env={"CDP_TIKTOK_ACCESS_TOKEN": "tok-very-secret"})
    assert settings.access_token.reveal() == "tok-very-secret"
    for text in (
        repr(settings),
        str(settings),
        repr(settings.access_token),
        f"{settings.access_token}",
    ):
        assert "tok-very-secret" not in text
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")

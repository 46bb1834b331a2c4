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
    with pytest.raises(SettingsError, match=r"s\.yaml:1: unknown setting 'pixle_code'"):
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


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CDP_TIKTOK_EVENT_SOURCE": "bogus"}, "event_source (from CDP_TIKTOK_EVENT_SOURCE)"),
        (
            {"CDP_TIKTOK_TIMEOUT_SECONDS": "nan"},
            "timeout_seconds (from CDP_TIKTOK_TIMEOUT_SECONDS)",
        ),
        ({"CDP_TIKTOK_TIMEOUT_SECONDS": "-1"}, "must be greater than 0"),
        ({"CDP_TIKTOK_TIMEOUT_SECONDS": "inf"}, "must be a finite number"),
        ({"CDP_TIKTOK_MAX_ATTEMPTS": "0"}, "max_attempts (from CDP_TIKTOK_MAX_ATTEMPTS)"),
        ({"CDP_TIKTOK_MAX_ATTEMPTS": "2.5"}, "expected a whole number"),
        ({"CDP_TIKTOK_DEFAULT_PHONE_REGION": "ZZ"}, "'ZZ' is not a phone region"),
        ({"CDP_TIKTOK_BATCH_MAX_EVENTS": "1001"}, "must be at most 1000"),
        ({"CDP_TIKTOK_ENDPOINT": "business-api.tiktok.com"}, "is not an http(s) URL"),
    ],
)
def test_each_value_is_checked_when_read_naming_its_source(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env=env)
    assert says in str(caught.value)


def test_file_errors_name_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text("pixel_code: C1\n# comment\nmax_attempts: 0\n")
    with pytest.raises(
        SettingsError, match=r"max_attempts \(from .*s\.yaml:3\): must be at least 1"
    ):
        load_settings(file=file, env={})
    file.write_text("timeout_seconds: .nan\n")
    with pytest.raises(SettingsError, match=r"s\.yaml:1\): must be a finite number"):
        load_settings(file=file, env={})
    file.write_text("event_source: [web]\n")
    with pytest.raises(SettingsError, match=r"event_source \(from .*s\.yaml:1\): expected a text"):
        load_settings(file=file, env={})
    file.write_text("a: [\n")
    with pytest.raises(SettingsError, match=r"s\.yaml:2: not valid YAML"):
        load_settings(file=file, env={})
    as_json = tmp_path / "s.json"
    as_json.write_text('{\n  "max_attempts": 0\n}')
    with pytest.raises(SettingsError, match=r"max_attempts \(from .*s\.json:2\)"):
        load_settings(file=as_json, env={})


def test_flag_is_named_as_the_source() -> None:
    with pytest.raises(
        SettingsError, match=r"default_phone_region \(from --default-phone-region\)"
    ):
        load_settings(env={}, overrides={"default_phone_region": "XX"})


def test_constructor_checks_values_too() -> None:
    with pytest.raises(
        SettingsError, match=r"timeout_seconds \(from TikTokSettings\(timeout_seconds"
    ):
        TikTokSettings(timeout_seconds=float("nan"))
    with pytest.raises(SettingsError, match="event_source"):
        TikTokSettings(event_source="bogus")
    assert TikTokSettings(default_phone_region="us").default_phone_region == "us"

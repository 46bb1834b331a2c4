"""``cdp-tiktok validate``."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from cdp_tiktok.cli import main
from tests.test_mapping_loader import FOUR_PROBLEMS


def run(*args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["validate", *args], env={"CDP_TIKTOK_DISABLE_PLUGINS": "", **env}
    )
    return result.exit_code, result.stdout, result.stderr


def test_four_problems_in_one_file_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent(FOUR_PROBLEMS).lstrip("\n"), encoding="utf-8")
    code, out, err = run(str(tmp_path))
    assert code == 1
    lines = [line for line in out.splitlines() if ": error: " in line]
    assert len(lines) == 4, out
    assert f"{path}:9: error: event 'Purchace'" in out
    assert f"{path}:14: error: access to " in out
    assert f"{path}:16: error: rule 'typo': unknown key 'whenn'" in out
    assert f"{path}:20: error: YAML syntax error" in out
    assert "FAILED: 4 error(s)" in err


def test_warnings_only_exit_zero(tmp_path: Path) -> None:
    (tmp_path / "legacy.yaml").write_text(
        "version: 1\ndefaults: {event_time: timestamp}\nrules:\n"
        "  - name: r\n    when: type == 'track'\n    event: CompletePayment\n",
        encoding="utf-8",
    )
    code, out, _ = run(str(tmp_path / "legacy.yaml"))
    assert code == 0
    assert "legacy.yaml:6: warning: event 'CompletePayment'" in out and "Purchase" in out
    assert "OK: 0 error(s), 1 warning(s)" in out


def test_default_mappings_are_valid_for_every_source() -> None:
    for source in ("web", "app", "offline", "crm"):
        code, out, _ = run("--event-source", source, CDP_TIKTOK_APP_ID="1234567890")
        assert code == 0, out
        assert "OK: 0 error(s)" in out and f"event_source {source}" in out
    code, out, _ = run("--event-source", "app", CDP_TIKTOK_APP_ID="")
    assert code == 1 and "app.app_id has no source (setting app_id is not set)" in out


def test_mapping_option_is_checked_when_no_path_is_given(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("version: 1\nrules: [1]\n", encoding="utf-8")
    code, out, _ = run("--mappings", str(tmp_path))
    assert code == 1
    assert "x.yaml:2: error: rules[0]" in out

"""``cdp-tiktok report``: match quality per TikTok event, counts only."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cdp_tiktok.cli import main
from cdp_tiktok.conformance.quality import QualityReport, keys_of

PAGE = {"url": "https://shop.example/?ttclid=E.C.P.1"}
SAMPLE = [
    {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}},
    {  # enriched with the identify's email: email + external_id + ttclid
        "type": "track", "event": "Order Completed", "userId": "u1",
        "properties": {"revenue": 5}, "context": {"page": PAGE},
    },
    {  # a national phone without region: dropped, reason counted
        "type": "track", "event": "Order Completed", "anonymousId": "a2",
        "context": {"page": {"url": "https://shop.example/"}, "ip": "203.0.113.9",
                    "userAgent": "Mozilla/5.0", "traits": {"phone": "06 12 34 56 78"}},
    },
    {"type": "track", "event": "Unmapped Thing", "userId": "u3"},
]  # fmt: skip


def test_report_json_counts_keys_strong_pairs_and_drop_reasons() -> None:
    stdin = "\n".join(json.dumps(m) for m in SAMPLE) + "\n{not json\n"
    result = CliRunner().invoke(main, ["report", "-", "--json"], input=stdin)
    assert result.exit_code == 1  # one invalid line, reported with its line number
    assert "<stdin>:5: " in result.stderr
    report = json.loads(result.stdout)
    assert report["messages"] == 4 and report["invalid"] == 1 and report["without_event"] == 2
    purchase = report["events"]["Purchase"]
    assert purchase["count"] == 2
    assert purchase["keys"]["email"] == {"count": 1, "share": 0.5}
    assert purchase["keys"]["external_id"]["count"] == 1
    assert purchase["keys"]["ttclid"]["count"] == 1
    assert purchase["keys"]["ip+user_agent"]["count"] == 1
    assert purchase["keys"]["phone"]["count"] == 0
    assert purchase["two_strong_keys"] == {"count": 1, "share": 0.5}
    assert purchase["dropped"] == {"phone:no_region": 1}
    assert "ada@example.com" not in result.stdout and "06 12" not in result.stdout


def test_report_table_and_region_setting_fix_the_drop() -> None:
    stdin = "\n".join(json.dumps(m) for m in SAMPLE[2:3])
    plain = CliRunner().invoke(main, ["report", "-"], input=stdin)
    assert plain.exit_code == 0, plain.output
    assert "Purchase" in plain.stdout and "phone:no_region x1" in plain.stdout
    fixed = CliRunner().invoke(
        main, ["report", "-", "--json", "--default-phone-region", "FR"], input=stdin
    )
    assert json.loads(fixed.stdout)["events"]["Purchase"]["keys"]["phone"]["count"] == 1


def test_keys_of_needs_both_ip_and_user_agent() -> None:
    assert keys_of({"user": {"ip": "1.2.3.4"}}) == set()
    assert keys_of({"user": {"ip": "1.2.3.4", "user_agent": "x", "ttp": "t"}}) == {
        "ip+user_agent",
        "ttp",
    }
    report = QualityReport()
    report.add([], {"email:invalid": 2})
    assert report.as_dict()["dropped_without_event"] == {"email:invalid": 2}

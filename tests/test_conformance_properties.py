"""The per-rule property checks catch what they promise to catch."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from cdp_tiktok.conformance.properties import Declared, RuleTarget, check_rule, rule_targets
from cdp_tiktok.mapping import default_mapping_dir
from cdp_tiktok.messages import validate_message
from cdp_tiktok.settings import TikTokSettings
from cdp_tiktok.testing.strategies import messages_for

SETTINGS = TikTokSettings(event_source_id="CPIXEL0000000000000A")
TARGETS = {t.rule.name: t for t in rule_targets([default_mapping_dir()], SETTINGS)}


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(messages_for(frozenset({"track"}), frozenset({"Order Completed", "Signed Up"})))
def test_messages_for_a_trigger_index_are_valid_and_admitted(message: dict[str, object]) -> None:
    valid = validate_message(message)
    assert valid["type"] == "track" and valid["event"] in ("Order Completed", "Signed Up")
    rule = "order-completed" if valid["event"] == "Order Completed" else "signed-up"
    assert TARGETS[rule].rule.trigger.admits(valid["type"], valid["event"])


def test_rules_inactive_for_the_source_are_checked_for_their_own() -> None:
    assert TARGETS["signed-in"].settings.event_source == "app"
    assert TARGETS["signed-in"].settings.app_id
    assert TARGETS["order-completed"].settings.event_source == "web"
    assert TARGETS["order-completed"].declared == Declared(
        ["properties.event_id", "properties.eventId", "messageId"],
        ["timestamp", "originalTimestamp"],
    )


def test_a_wrong_declared_default_is_reported() -> None:
    real = TARGETS["payment-info-entered"]
    # one lie at a time: the first failing example reports the lie it exposes
    wrong_id = Declared(["anonymousId"], real.declared.event_time)
    result = check_rule(
        RuleTarget(real.rule, real.settings, real.mapping, wrong_id), max_examples=30
    )
    assert result.failed
    assert any("event_id: declared anonymousId gives" in d for d in result.details), result.details
    no_time = Declared(real.declared.event_id, None)
    result = check_rule(
        RuleTarget(real.rule, real.settings, real.mapping, no_time), max_examples=30
    )
    assert result.failed
    assert any("event_time: the rule removes it" in d for d in result.details)


NONDETERMINISTIC = """
version: 1
defaults:
  event_id: messageId
  event_time: timestamp
  page: {url: context.page.url}
rules:
  - name: flaky
    when: type == "track" and event == "Signed Up"
    event: CompleteRegistration
    properties:
      description: messageId | counter
"""


def test_nondeterministic_output_is_reported(tmp_path: Path) -> None:
    (tmp_path / "flaky.yaml").write_text(textwrap.dedent(NONDETERMINISTIC), encoding="utf-8")
    calls = itertools.count()
    filters = {"counter": lambda value: f"{value}-{next(calls)}"}
    (target,) = rule_targets([tmp_path], SETTINGS, filters)
    result = check_rule(target, max_examples=20)
    assert result.failed
    assert "the same input gave a different output the second time" in result.details[0]
    assert result.details[0].startswith(f"rule 'flaky' ({tmp_path / 'flaky.yaml'}:")

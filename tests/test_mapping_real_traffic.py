"""Issue 8: real traffic through the mappings: match-first, pageless web events,
normalized event names, honest validate, located skip warnings."""

from __future__ import annotations

from pathlib import Path

from cdp_tiktok.mapping import MappingSet
from tests.test_mapping_engine import mapping, message


def test_match_first_stops_at_the_first_matching_rule_even_when_it_sends_nothing(
    tmp_path: Path,
) -> None:
    m: MappingSet = mapping(
        tmp_path,
        """
        - name: needs-a-time
          when: type == "track" and event == "E"
          event: Purchase
          event_time: properties.paid_at
        - name: catch-all
          when: type == "track"
          event: Search
        """,
    )
    result = m.map(message())
    assert result.events == []
    assert any("needs-a-time" in w and "event_time" in w for w in result.warnings)
    explained = m.map(message(), explain=True).explain
    assert any("'catch-all'" in line and "not evaluated" in line for line in explained)
    assert not any("no rule fired" in line for line in explained)

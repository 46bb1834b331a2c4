"""The golden-case format: schema errors with file:line, and the JSON-pointer diff."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdp_tiktok.conformance.cases import DEFAULT_PIXEL, GoldenCase, case_files, load_cases
from cdp_tiktok.conformance.diff import MISSING, compare
from cdp_tiktok.conformance.runner import CaseRunner
from cdp_tiktok.settings import TikTokSettings


def _cases(tmp_path: Path, text: str) -> tuple[list[GoldenCase], list[str]]:
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    cases, problems = load_cases([path])
    return cases, [str(p).replace(str(path), "cases.yaml") for p in problems]


def test_case_file_problems_are_located(tmp_path: Path) -> None:
    _, problems = _cases(
        tmp_path,
        """
        - name: typo
          input: {type: track, event: Signed Up, userId: u}
          expectd: []
        - name: bad setting
          settings:
            pixel: X
          input: {type: page, userId: u}
          expected: []
        - name: a
          input: {type: page, userId: u}
          expected: []
        - name: a
          input: {type: page, userId: u}
          absent: [user/email]
          expected: []
        - name: both
          input: {type: track, userId: u}
          expected: []
          refused: event
        - name: a
          input: {type: page, userId: u}
          expected: []
        """,
    )
    assert problems == [
        "cases.yaml:3: error: case 'typo': unknown key 'expectd'; did you mean 'expected'?",
        "cases.yaml:6: error: case 'bad setting': unknown setting 'pixel'",
        "cases.yaml:14: error: case 'a': absent/0: 'user/email' does not match '^(/[^/]*)+$'",
        "cases.yaml:16: error: case 'both': give exactly one of `expected` and `refused`",
        "cases.yaml:20: error: case name 'a' is already used at cases.yaml:9",
    ]


def test_yaml_syntax_error_and_non_list_are_reported(tmp_path: Path) -> None:
    assert _cases(tmp_path, "- name: [unclosed\n")[1][0].startswith("cases.yaml:1: error: YAML")
    problems = _cases(tmp_path, "name: not a list\n")[1]
    assert problems[0].startswith("cases.yaml:1: error: a case file is a list of cases")


def test_diff_names_each_pointer() -> None:
    expected = [{"event": "Purchase", "properties": {"value": 10, "currency": "USD"}}]
    actual = [{"event": "Purchase", "properties": {"value": 10.0, "num_items": 1}}, {"e": 1}]
    lines = [str(d) for d in compare(expected, actual)]
    assert lines == [
        '/0/properties/currency: expected "USD", got (absent)',
        "/0/properties/num_items: expected (absent), got 1",
        '/1: expected (absent), got {"e": 1}',
    ]


def test_diff_ignore_absent_and_wildcards() -> None:
    actual = [{"event_time": 5, "user": {"ip": "1.2.3.4", "ttclid": "x"}}, {"event_time": 6}]
    expected = [{"event_time": 0, "user": {"ip": "1.2.3.4"}}, {"event_time": 0}]
    differences = compare(expected, actual, ignore=["/*/event_time"], absent=["/*/user/ttclid"])
    assert [str(d) for d in differences] == [
        '/0/user/ttclid: expected (absent), got "x"',
        '/0/user/ttclid: must be absent, got "x"',
    ]
    assert compare([{"a": True}], [{"a": 1}])[0].actual == 1
    assert compare([{"a": 1}], [{}])[0].actual is MISSING


@pytest.fixture(scope="module")
def runner() -> CaseRunner:
    with CaseRunner(TikTokSettings(event_source_id=DEFAULT_PIXEL), load_entry_points=False) as r:
        yield r  # type: ignore[misc]


def _case(**fields: object) -> GoldenCase:
    base: dict[str, object] = {"name": "c", "file": "f.yaml", "line": 3}
    return GoldenCase(**{**base, **fields})  # type: ignore[arg-type]


PAYMENT = {
    "type": "track",
    "event": "Payment Info Entered",
    "userId": "user_123",
    "messageId": "m1",
    "timestamp": "2025-03-01T12:00:00Z",
    "context": {"page": {"url": "https://shop.example/"}},
}
PAYMENT_EVENT = {
    "event": "AddPaymentInfo",
    "event_time": 1740830400,
    "event_id": "m1",
    "user": {"external_id": ["80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"]},
    "page": {"url": "https://shop.example/"},
}


def test_runner_passes_and_fails_with_pointer(runner: CaseRunner) -> None:
    ok = runner.run(_case(input=PAYMENT, rule="payment-info-entered", expected=[PAYMENT_EVENT]))
    assert ok.status == "passed", ok.details
    wrong = {**PAYMENT_EVENT, "event_id": "m2"}
    failed = runner.run(_case(input=PAYMENT, rule="payment-info-entered", expected=[wrong]))
    assert failed.details == ['f.yaml:3: /0/event_id: expected "m2", got "m1"']
    rule = runner.run(_case(input=PAYMENT, rule="signed-up", expected=[PAYMENT_EVENT]))
    assert rule.details == [
        "f.yaml:3: rule: expected ['signed-up'], fired ['payment-info-entered']"
    ]


def test_runner_refused_warnings_dropped_and_envelope(runner: CaseRunner) -> None:
    bad = {"type": "track", "userId": "u"}
    assert runner.run(_case(input=bad, refused="/event")).status == "passed"
    wrong = runner.run(_case(input=bad, refused="/timestamp"))
    assert "refused, but the error does not contain '/timestamp'" in wrong.details[0]
    accepted = runner.run(_case(input=PAYMENT, refused="/event"))
    assert "but it was accepted" in accepted.details[0]
    no_page = {k: v for k, v in PAYMENT.items() if k != "context"}
    strict = {"require_page_url": True}
    quiet = runner.run(
        _case(input=no_page, settings=strict, expected=[], warnings=("need page.url",))
    )
    assert quiet.status == "passed", quiet.details
    silent = runner.run(_case(input=no_page, settings=strict, expected=[PAYMENT_EVENT]))
    assert silent.details[0].startswith('f.yaml:3: /0: expected {"event": "AddPaymentInfo"')
    assert silent.details[0].endswith("got (absent)")
    assert (
        "the mapping warned: rule payment-info-entered: web events need page.url"
        in (silent.details[-1])
    )
    drops = runner.run(_case(input=PAYMENT, expected=[PAYMENT_EVENT], dropped_keys={"x:y": 1}))
    assert drops.details == ["f.yaml:3: dropped_keys: expected {'x:y': 1}, got {}"]
    envelope = runner.run(
        _case(
            input=PAYMENT,
            settings={"test_event_code": "T1"},
            expected=[PAYMENT_EVENT],
            envelope={"test_event_code": "T2", "event_source_id": DEFAULT_PIXEL},
        )
    )
    assert envelope.details == [
        'f.yaml:3: envelope of event 0: /test_event_code: expected "T2", got "T1"'
    ]


def test_packaged_case_files_are_found_beside_the_defaults() -> None:
    from cdp_tiktok.conformance.cases import cases_dir
    from cdp_tiktok.mapping import default_mapping_dir

    names = [p.name for p in case_files(cases_dir(default_mapping_dir()))]
    assert "tricky-inputs.yaml" in names and "segment.yaml" in names


def test_case_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    from cdp_tiktok.conformance.cases import case_schema

    schema = case_schema()
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert set(schema["$defs"]["case"]["properties"]) >= {
        "name", "input", "before", "settings", "rule", "expected", "absent", "ignore",
        "refused", "warnings", "dropped_keys", "envelope",
    }  # fmt: skip

"""The engine's small fast paths equal the code they replace.

* ``id_digests`` (a loop over one or two ids) gives what de-duplicating the digests of
  the non-empty ids with a dict gives: same digests, same order, a new list;
* ``_with_user`` (the user object replaced in place when the event has one) gives what
  rebuilding the event in the output order gives, for every event whose keys are in
  that order (as the engine builds them): same keys, same order, same values.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.identity import id_digest, id_digests
from cdp_tiktok.mapping.engine import OUTPUT_FIELDS, _with_user

ids = st.one_of(st.none(), st.sampled_from(["", "u1", "u2", "anon-1"]), st.text(max_size=4))


@settings(max_examples=400)
@given(st.lists(ids, max_size=4))
def test_id_digests_equal_the_dict_route(given_ids: list[str | None]) -> None:
    expected = list(dict.fromkeys(id_digest(i) for i in given_ids if i))
    first = id_digests(*given_ids)
    assert first == expected
    assert first is not id_digests(*given_ids)  # callers may extend their list


def reference_with_user(data: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The rebuild the fast path replaces (engine.py before it)."""
    merged = {**data, "user": user}
    return {key: merged[key] for key in ("event", *OUTPUT_FIELDS) if key in merged}


events = st.lists(st.booleans(), min_size=len(OUTPUT_FIELDS), max_size=len(OUTPUT_FIELDS)).map(
    lambda keep: {
        "event": "Purchase",
        **{
            key: {"n": i}
            for i, (key, kept) in enumerate(zip(OUTPUT_FIELDS, keep, strict=True))
            if kept
        },
    }
)


@settings(max_examples=300)
@given(events, st.dictionaries(st.sampled_from(["email", "ip"]), st.text(max_size=3)))
def test_with_user_equals_the_rebuild(data: dict[str, Any], user: dict[str, Any]) -> None:
    fast, slow = _with_user(data, user), reference_with_user(data, user)
    assert list(fast.items()) == list(slow.items())
    assert fast is not data

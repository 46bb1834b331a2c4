"""The engine's small fast paths equal the code they replace.

* ``id_digests`` (a loop over one or two ids) gives what de-duplicating the digests of
  the non-empty ids with a dict gives: same digests, same order, a new list;
* enrichment from the identity store, which fills the user object of the message's own
  event in place, gives what copying it (``enrich_user``) and rebuilding the event in the
  output order gives, for every event whose keys are in that order (as the engine builds
  them): same keys, same order, same values, and no list shared with the store's answer.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_tiktok.events import BatchKey, MapResult, OutgoingEvent
from cdp_tiktok.identity import enrich_user, id_digest, id_digests
from cdp_tiktok.mapping import default_mapping_dir, load_mapping_set
from cdp_tiktok.mapping.engine import OUTPUT_FIELDS
from cdp_tiktok.matchkeys import sha256_hex
from cdp_tiktok.settings import TikTokSettings

ids = st.one_of(st.none(), st.sampled_from(["", "u1", "u2", "anon-1"]), st.text(max_size=4))


@settings(max_examples=400)
@given(st.lists(ids, max_size=4))
def test_id_digests_equal_the_dict_route(given_ids: list[str | None]) -> None:
    expected = list(dict.fromkeys(id_digest(i) for i in given_ids if i))
    first = id_digests(*given_ids)
    assert first == expected
    assert first is not id_digests(*given_ids)  # callers may extend their list


def reference_with_user(data: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The rebuild of an event with a new user object, in the output order."""
    merged = {**data, "user": user}
    return {key: merged[key] for key in ("event", *OUTPUT_FIELDS) if key in merged}


HASHES = [sha256_hex(str(i)) for i in range(4)]
hash_lists = st.lists(st.sampled_from(HASHES), max_size=2)
# the engine's user objects never hold an empty list (the normalizer omits blank keys)
users = st.dictionaries(
    st.sampled_from(["email", "phone", "external_id"]),
    st.lists(st.sampled_from(HASHES), min_size=1, max_size=2),
    max_size=3,
).map(lambda keys: {**keys, "ip": "203.0.113.9"})
events = st.tuples(
    st.lists(st.booleans(), min_size=len(OUTPUT_FIELDS), max_size=len(OUTPUT_FIELDS)), users
).map(
    lambda drawn: {
        "event": "Purchase",
        **{
            key: drawn[1] if key == "user" else {"n": i}
            for i, (key, kept) in enumerate(zip(OUTPUT_FIELDS, drawn[0], strict=True))
            if kept
        },
    }
)
stored_answers = st.dictionaries(
    st.sampled_from(["email", "phone", "external_id"]), hash_lists, max_size=3
)
MAPPING = load_mapping_set(
    [default_mapping_dir()], settings=TikTokSettings(event_source_id="CPIXEL0000000000000A")
)
KEY = BatchKey("TikTok", "web", "CPIXEL0000000000000A")


@settings(max_examples=300)
@given(events, stored_answers)
def test_enrichment_in_place_equals_the_copying_route(
    data: dict[str, Any], stored: dict[str, list[str]]
) -> None:
    user, filled = enrich_user(data.get("user", {}), stored)
    expected = reference_with_user(data, user) if filled else copy.deepcopy(data)
    kept = copy.deepcopy(stored)
    result = MapResult([OutgoingEvent(KEY, copy.deepcopy(data), "r")], [], [], {}, {})
    MAPPING._enrich(result, stored, explain=True)
    got = result.events[0].data
    assert list(got.items()) == list(expected.items())
    assert list(got.get("user", {}).items()) == list(expected.get("user", {}).items())
    assert len(result.explain) == (1 if filled else 0)
    for values in got.get("user", {}).values():
        assert all(values is not answer for answer in stored.values())
    assert stored == kept  # the store's answer is only read

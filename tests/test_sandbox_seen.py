"""The sandbox's on-disk de-duplication keys answer exactly as an in-memory set would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.sandbox.state import SeenKeys

_KEYS = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["pixel-a", "pixel-b"]),
        st.sampled_from(["Purchase", "ViewContent"]),
        st.text(max_size=4),
    ),
)


def _model(batches: list[list[tuple[str, str, str] | None]]) -> list[list[int]]:
    seen: set[tuple[str, str, str]] = set()
    answers = []
    for batch in batches:
        duplicates = []
        for position, key in enumerate(batch):
            if key is None:
                continue
            if key in seen:
                duplicates.append(position)
            seen.add(key)
        answers.append(duplicates)
    return answers


@given(st.lists(st.lists(_KEYS, max_size=30), max_size=8))
def test_seen_keys_equal_a_set(batches: list[list[tuple[str, str, str] | None]]) -> None:
    seen = SeenKeys()
    assert [seen.add_new(batch) for batch in batches] == _model(batches)


def test_seen_keys_span_lookup_chunks_and_clear() -> None:
    seen = SeenKeys()
    keys: list[tuple[str, str, str] | None] = [("p", "Search", str(i)) for i in range(1200)]
    assert seen.add_new(keys) == []
    assert seen.add_new([*keys[::-1], None]) == list(range(1200))
    seen.clear()
    assert seen.add_new(keys[:3]) == []

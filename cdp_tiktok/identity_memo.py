"""A memo of identity lookups: the same person's answer, until it can change.

Most events of a stream come from people seen a moment ago, and between two writes about
a person their lookup gives the same answer. :class:`LookupMemo` keeps each answer by the
ids it was asked with, together with the id digests its walk read and the window of
``since`` (lookup time less the TTL) in which every row and link it read keeps its
freshness. An answer is served only inside that window and only while no write touched
one of those digests, so it equals what the store would compute again:

* a row or link counts when it was written at or after ``since``; ``since`` inside
  ``[since when computed, oldest counted write]`` keeps exactly the same ones counting
  (earlier ``since``, a clock or ``now`` going back, is recomputed);
* every write (remember, link) touches the digests it writes, and a link is written on
  both its ids, so a write that could join another id to a walk touches the walk;
* deletions the memo cannot follow one by one (forget, purge, a copy dropped) clear it.

Held in process memory only, like the store's own copy: raw ids as keys (never written
anywhere), digests and hashed keys as values; at most ``max_entries`` digests of
answers, then it starts again empty. Not thread-safe: the store calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

MAX_ENTRIES: Final = 65536
"""Digests of kept answers held at most (one or a few per answer, each answer a few
hundred bytes); then the memo is cleared."""

Ids = tuple[str | None, str | None]


class LookupMemo:
    """Lookup answers by ``(user_id, anonymous_id)``; see the module docstring."""

    __slots__ = ("_answers", "_by_digest", "_max", "_size")

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        # ids -> (answer, since it was computed at, latest since it holds for)
        self._answers: dict[Ids, tuple[dict[str, list[str]], float, float]] = {}
        # digest -> the ids whose answer read it
        self._by_digest: dict[str, list[Ids]] = {}
        self._size = 0  # entries of _by_digest's lists

    def answer(self, ids: Ids, since: float) -> dict[str, list[str]] | None:
        """The kept answer for ``ids`` if it holds at ``since``, else ``None``."""
        found = self._answers.get(ids)
        if found is not None and found[1] <= since <= found[2]:
            return found[0]
        return None

    def keep(
        self,
        ids: Ids,
        answer: dict[str, list[str]],
        digests: Iterable[str],
        since: float,
        until: float,
    ) -> None:
        """Keep ``answer``, computed at ``since`` from the rows of ``digests``, the oldest
        of those counted written at ``until`` (``inf`` when none counted)."""
        if self._size >= self._max:
            self.clear()
        self._answers[ids] = (answer, since, until)
        by_digest = self._by_digest
        for digest in digests:
            readers = by_digest.get(digest)
            if readers is None:
                by_digest[digest] = [ids]
            else:
                readers.append(ids)
            self._size += 1

    def touch(self, digests: Iterable[str]) -> None:
        """Forget every answer that read one of ``digests`` (they were written)."""
        answers = self._answers
        for digest in digests:
            for ids in self._by_digest.pop(digest, ()):
                answers.pop(ids, None)

    def clear(self) -> None:
        """Forget every answer."""
        self._answers.clear()
        self._by_digest.clear()
        self._size = 0

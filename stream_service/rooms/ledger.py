"""Which messages of a room this node has handed to its members, to find the ones the bus
lost (it is at-most-once) and fetch them from the store.

Message ids carry their seq (``m<seq>``), allocated in order by the store, so a message
whose seq is above the highest seen plus one reveals a gap. Two nodes appending at once
may also publish out of seq order, so a gap is only repaired after a short delay (the
late one usually arrives meanwhile) and only messages still unseen are delivered; a
message is never handed to the node's joined members twice.
"""

from __future__ import annotations

from collections.abc import Iterable


class MessageLedger:
    def __init__(self, keep: int) -> None:
        self.keep = keep  # seqs remembered behind the highest (bounded memory)
        self.started = False
        self.floor = 0  # seqs at or below it count as delivered (the first snapshot, pruning)
        self.high = 0
        self._seen: set[int] = set()

    def start(self, snapshot: Iterable[int]) -> None:
        """The first `joined` of the room on this node held these messages."""
        if self.started:
            return
        self.started = True
        seqs = list(snapshot)
        self._seen.update(seqs)
        self.high = max([self.high, *seqs])
        self.floor = min(seqs, default=self.high + 1) - 1

    def record(self, seq: int) -> tuple[bool, bool]:
        """A message is about to be delivered: (new, gap). ``new`` False: already
        delivered, skip it. ``gap``: some seq between the highest seen and this is missing."""
        if seq <= self.floor or seq in self._seen:
            return False, False
        gap = self.started and seq > self.high + 1
        self._seen.add(seq)
        if seq > self.high:
            self.high = seq
            self._prune()
        return True, gap

    def unseen(self, seqs: Iterable[int]) -> list[int]:
        """Of these stored seqs, the ones never delivered (in order)."""
        return sorted(s for s in seqs if s > self.floor and s not in self._seen)

    def _prune(self) -> None:
        floor = self.high - self.keep
        if floor > self.floor:
            self.floor = floor
            self._seen = {s for s in self._seen if s > floor}

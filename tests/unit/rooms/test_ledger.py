"""The message ledger: which room messages a node delivered, to repair what the bus lost."""

from __future__ import annotations

from stream_service.rooms.ledger import MessageLedger


def test_in_order_messages_are_new_without_gaps() -> None:
    ledger = MessageLedger(keep=100)
    ledger.start([1, 2, 3])
    assert ledger.record(4) == (True, False)
    assert ledger.record(5) == (True, False)
    assert ledger.record(5) == (False, False)  # a second delivery is refused
    assert ledger.record(2) == (False, False)  # it came with the snapshot


def test_a_gap_is_reported_and_the_late_message_is_still_new_once() -> None:
    ledger = MessageLedger(keep=100)
    ledger.start([])
    assert ledger.record(1) == (True, False)
    assert ledger.record(3) == (True, True)  # 2 is missing
    assert ledger.unseen([1, 2, 3]) == [2]
    assert ledger.record(2) == (True, False)  # it arrived late: delivered, once
    assert ledger.unseen([1, 2, 3]) == []
    assert ledger.record(2) == (False, False)


def test_before_the_first_snapshot_there_are_no_gaps_and_memory_is_bounded() -> None:
    ledger = MessageLedger(keep=10)
    assert ledger.record(7) == (True, False)
    ledger.start([5, 6, 7])
    for seq in range(8, 200):
        assert ledger.record(seq) == (True, False)
    assert len(ledger._seen) <= 11
    assert ledger.record(150) == (False, False)  # below the remembered window: old

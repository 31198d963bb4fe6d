"""Stream ids (who and when they were made for) and a request's own grace window."""

from __future__ import annotations

import time

import pytest

from core.errors import InvalidRequest
from core.ids import STREAM_ID
from core.schemas.chat import ChatCompletionRequest, ChatMessage, StreamOptions
from stream_service.engine.grace import requested_grace
from stream_service.engine.ids import StreamIds, is_ticket, new_ticket


def test_ids_have_the_stream_id_shape_and_say_for_whom_they_were_made() -> None:
    ids = StreamIds("k" * 32, record_wait_s=2.0)
    made = {ids.new("alice") for _ in range(200)}
    assert len(made) == 200
    for stream_id in made:
        assert STREAM_ID.is_valid(stream_id)
        assert ids.made_for(stream_id, ["alice"])
        assert not ids.made_for(stream_id, ["bob"])
        assert not StreamIds("other key", 2.0).made_for(stream_id, ["alice"])
    assert ids.made_for(ids.new("room:r1"), ["alice", "room:r1"])


def test_only_a_new_id_of_the_asking_user_may_wait_for_its_record() -> None:
    ids = StreamIds("k" * 32, record_wait_s=2.0)
    mine = ids.new("alice")
    assert ids.record_deadline(mine, ["alice"]) > time.monotonic() + 1.0
    now = time.monotonic()
    for stream_id, owners in [
        (mine, ["bob"]),  # someone else's
        ("0" * 32, ["alice"]),  # made up, "created" in 1970
        (f"{int(time.time() * 1000):012x}" + "0" * 20, ["alice"]),  # made up, "new"
        ("f" * 32, ["alice"]),  # from the far future
        ("not hex at all, 32 characters..", ["alice"]),
    ]:
        assert ids.record_deadline(stream_id, owners) <= now + 0.01, stream_id


def test_tickets_are_never_stream_ids() -> None:
    ticket = new_ticket()
    assert is_ticket(ticket) and not STREAM_ID.is_valid(ticket)
    assert not is_ticket(StreamIds("k", 2.0).new("c"))


def _request(grace: float | None) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="m",
        messages=[ChatMessage(role="user", content="hi")],
        stream_options=StreamOptions(resume_grace_s=grace),
    )


def test_a_request_lowers_the_grace_never_raises_it() -> None:
    assert requested_grace(_request(None), None, 20) is None
    assert requested_grace(_request(0), None, 20) == 0
    assert requested_grace(_request(5), " 2.5 ", 20) == 2.5  # the lower of the two
    assert requested_grace(_request(None), "20", 20) == 20
    for grace, header, param in [
        (20.5, None, "stream_options.resume_grace_s"),
        (-0.1, None, "stream_options.resume_grace_s"),
        (None, "21", "X-Resume-Grace-S"),
        (None, "inf", "X-Resume-Grace-S"),
        (None, "", "X-Resume-Grace-S"),
        (None, "1e999", "X-Resume-Grace-S"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            requested_grace(_request(grace), header, 20)
        assert caught.value.param == param

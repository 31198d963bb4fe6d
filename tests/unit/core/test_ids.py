from __future__ import annotations

import inspect

import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient

from core.errors import NotFound
from core.http.errors import EXCEPTION_HANDLERS
from core.http.ids import require_valid_path_ids
from core.ids import BATCH_ID, FILE_ID, STREAM_ID, shown

GOOD_STREAM = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("fmt", "good"),
    [
        (STREAM_ID, GOOD_STREAM),
        (FILE_ID, f"file-{GOOD_STREAM}"),
        (BATCH_ID, f"batch_{GOOD_STREAM}"),
    ],
)
def test_formats_accept_their_own_ids_only(fmt: object, good: str) -> None:
    from core.ids import IdFormat

    assert isinstance(fmt, IdFormat)
    assert fmt.is_valid(good)
    for bad in (good + "\n", good.upper(), good[:-1], good + "0", "x" * 3000, "", None, 5):
        assert not fmt.is_valid(bad)
    assert fmt.require(good) == good
    with pytest.raises(NotFound) as info:
        fmt.require("z" * 3000)
    assert info.value.param == fmt.param
    assert len(info.value.message) < 120


def test_shown_is_printable_and_short() -> None:
    assert shown("abc") == "abc"
    assert shown("a\nb") == "a\\nb"
    assert len(shown("x" * 3000)) == 67


def test_guard_answers_404_before_the_handler_runs() -> None:
    calls: list[str] = []

    @get("/s/{stream_id:str}", sync_to_thread=False)
    def status(stream_id: FromPath[str]) -> dict[str, str]:
        calls.append(stream_id)
        return {"id": stream_id}

    app = Litestar([status], guards=[require_valid_path_ids], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client:
        assert client.get(f"/s/{GOOD_STREAM}").status_code == 200
        response = client.get("/s/" + "a" * 3000)
        assert response.status_code == 404
        assert response.json()["error"]["message"].startswith("No such stream: aaa")
        assert client.get("/s/..%2Fx").status_code == 404
    assert calls == [GOOD_STREAM]


def test_the_guard_runs_on_the_event_loop_not_in_a_thread() -> None:
    # Litestar runs a sync guard in its thread pool on every request (a thread hop and the
    # GIL handed back and forth per request); a coroutine guard runs in place.
    assert inspect.iscoroutinefunction(require_valid_path_ids)

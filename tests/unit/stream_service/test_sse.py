"""``Outlet``: a chunk written from another task goes out at once, or is finished, in order,
by the response's own task; a response that ends drops what is still waiting."""

from __future__ import annotations

import asyncio

from stream_service.transports.outlet import Outlet


class _Server:
    """An ASGI send like uvicorn's: it waits (before writing) while writing is paused."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()

    async def send(self, message: dict[str, object]) -> None:
        await self.writable.wait()
        self.written.append(message["body"])  # type: ignore[arg-type]


def _outlet(server: _Server) -> Outlet:
    outlet = Outlet()
    outlet._send = server.send  # type: ignore[assignment]  # as EventStream binds it
    return outlet


async def test_a_write_goes_out_at_once_when_the_server_can_take_it() -> None:
    server = _Server()
    outlet = _outlet(server)
    assert outlet.write(b"a") and outlet.write(b"b")
    assert server.written == [b"a", b"b"] and outlet.pending is None


async def test_an_unbound_outlet_writes_nothing() -> None:
    assert not Outlet().write(b"a")


async def test_a_write_that_must_wait_is_finished_in_order_by_the_response_task() -> None:
    server = _Server()
    outlet = _outlet(server)
    server.writable.clear()
    assert outlet.write(b"a")  # started: it goes out once the server can write
    assert outlet.pending is not None
    assert not outlet.write(b"b")  # nothing may overtake it
    settling = asyncio.ensure_future(outlet.settle())
    await asyncio.sleep(0.01)
    assert not settling.done() and server.written == []
    server.writable.set()
    await asyncio.wait_for(settling, 1)
    assert server.written == [b"a"] and outlet.pending is None
    assert outlet.write(b"b") and server.written == [b"a", b"b"]


async def test_a_task_cancelled_while_settling_cancels_the_send() -> None:
    server = _Server()
    outlet = _outlet(server)
    server.writable.clear()
    assert outlet.write(b"a")
    settling = asyncio.ensure_future(outlet.settle())
    await asyncio.sleep(0.01)
    settling.cancel()  # the client left
    await asyncio.gather(settling, return_exceptions=True)
    assert settling.cancelled() and outlet.pending is None
    assert not server.writable._waiters  # type: ignore[attr-defined]  # nothing left waiting
    server.writable.set()
    await asyncio.sleep(0.01)
    assert server.written == []


async def test_closing_drops_a_waiting_send() -> None:
    server = _Server()
    outlet = _outlet(server)
    server.writable.clear()
    assert outlet.write(b"a")
    outlet.close()  # the response ended before its task could finish the send
    assert outlet.pending is None and not outlet.write(b"b")
    assert not server.writable._waiters  # type: ignore[attr-defined]
    server.writable.set()
    await asyncio.sleep(0.01)
    assert server.written == []


def test_the_stream_app_has_no_send_hooks_that_would_run_in_the_producer() -> None:
    """The producer runs a response's send in place (Outlet.write): a hook or middleware
    around send that waits after writing, or binds to the current task, would break that."""
    from core.providers.local import LocalProvider
    from core.settings import Settings
    from stream_service.app import create_app
    from stream_service.config import StreamSettings
    from stream_service.store.memory import MemoryStore

    app = create_app(
        Settings(), StreamSettings(stream_store="memory"), MemoryStore(), LocalProvider(["m"], 0, 0)
    )
    assert app.before_send == [] and app.middleware == []

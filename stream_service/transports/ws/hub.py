"""The node's open WebSockets, so a drain can ask every client to reconnect elsewhere."""

from __future__ import annotations

from stream_service.transports.ws.connection import CLOSE_RESTART, WsConnection


class WsHub:
    def __init__(self) -> None:
        self._open: set[WsConnection] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, conn: WsConnection) -> None:
        self._open.add(conn)

    def discard(self, conn: WsConnection) -> None:
        self._open.discard(conn)

    async def close_all(self) -> None:
        """SIGTERM: every socket is closed with 1012 (reconnect, resume by ``seq``)."""
        for conn in list(self._open):
            conn.close(CLOSE_RESTART, "this node is restarting: reconnect and resume by seq")

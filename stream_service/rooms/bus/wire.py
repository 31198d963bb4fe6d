"""What the Redis buses put on the wire: channel names and the origin-tagged payload.

Each publication is ``<node id> NUL <data>`` on ``<prefix><channel>``, so a node skips
its own publications (it delivered them locally already). The same format on one
redis-server and on a cluster: nodes of either kind could share a channel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

_SEP = b"\x00"

# ElastiCache Serverless caps a request at 3,999 arguments; one (S)SUBSCRIBE carries at
# most this many channels (the command name is one argument more).
MAX_CHANNELS_PER_COMMAND = 3_998


@dataclass(frozen=True, slots=True)
class Wire:
    prefix: str
    node_id: str
    _origin: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_origin", self.node_id.encode() + _SEP)

    def key(self, channel: str) -> str:
        """The Redis channel of bus channel ``channel``."""
        return self.prefix + channel

    def control_key(self) -> str:
        """This node's own channel (nobody publishes on it: it keeps a connection in
        subscribed mode, so pings are answered in-band)."""
        return self.key(f"node:{self.node_id}")

    def channel(self, raw: bytes | str) -> str | None:
        """The bus channel of Redis channel ``raw``; None for a control or foreign one."""
        name = raw.decode() if isinstance(raw, bytes) else raw
        if not name.startswith(self.prefix):
            return None
        channel = name[len(self.prefix) :]
        return None if channel.startswith("node:") else channel

    def encode(self, data: bytes) -> bytes:
        return self._origin + data

    def decode(self, raw: bytes) -> bytes | None:
        """The payload of another node's publication; None for ours or a malformed one."""
        origin, sep, payload = raw.partition(_SEP)
        if not sep or origin == self._origin[:-1]:
            return None
        return payload


def chunks(keys: Sequence[str], size: int) -> Iterator[list[str]]:
    """``keys`` in runs of at most ``size`` (one subscribe command each)."""
    for start in range(0, len(keys), size):
        yield list(keys[start : start + size])


def slot_chunks(keys: Sequence[str], size: int) -> Iterator[list[str]]:
    """``keys`` grouped by hash slot, each group in runs of at most ``size``: an SSUBSCRIBE
    takes channels of one slot only (CROSSSLOT otherwise)."""
    from redis.crc import key_slot  # the cluster bus's, which has imported redis-py

    by_slot: dict[int, list[str]] = {}
    for key in keys:
        by_slot.setdefault(key_slot(key.encode()), []).append(key)
    for group in by_slot.values():
        yield from chunks(group, size)

"""Collaborative rooms: the room service (membership, conversation, presence, typing) and
the bus that carries room traffic between nodes. Knows no transport: connections plug in
through :class:`stream_service.rooms.members.Member`."""

"""``/stream/v1/rooms``: create rooms, add members (SPEC section 6)."""

from stream_service.domain.rooms.controller import Rooms, RoomsController
from stream_service.rooms.wiring import build_room_service, room_dependencies, room_lifespan

__all__ = [
    "Rooms",
    "RoomsController",
    "build_room_service",
    "room_dependencies",
    "room_lifespan",
]

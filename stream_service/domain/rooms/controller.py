"""``POST /stream/v1/rooms`` and ``POST /stream/v1/rooms/{id}/members`` (SPEC section 6).

Errors are OpenAI-shaped: 400 ``invalid_request`` for a bad body, 404 ``room_not_found``
for a room that does not exist or whose member the caller is not (the two look the same),
409 ``room_full`` at ``ROOM_MAX_MEMBERS``, 409 ``too_many_rooms`` at
``ROOM_MAX_ROOMS_PER_USER``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from core import json_input
from core.errors import Conflict, InvalidRequest, NotFound
from core.http.auth import AuthPrincipal
from stream_service.rooms.service import RoomService
from stream_service.store.rooms_base import RoomFull, RoomNotFound, TooManyRooms

# a handler parameter named ``rooms`` annotated ``Rooms`` gets the node's room service
Rooms: TypeAlias = NamedDependency[RoomService]


class AddMember(msgspec.Struct, forbid_unknown_fields=True):
    user: str


_add_member = msgspec.json.Decoder(AddMember)


def _not_found(room_id: str) -> NotFound:
    return NotFound(f"No room '{room_id}'.", code="room_not_found", param="id")


class RoomsController(Controller):
    path = "/stream/v1/rooms"

    @post(status_code=201)
    async def create(self, principal: AuthPrincipal, rooms: Rooms) -> dict[str, Any]:
        try:
            room = await rooms.create_room(principal.sub)
        except TooManyRooms as exc:
            raise Conflict(str(exc), code=exc.code) from None
        return {"id": room.id, "members": sorted(room.members)}

    @post("/{room_id:str}/members", status_code=200)
    async def add_member(
        self,
        request: Request[Any, Any, Any],
        principal: AuthPrincipal,
        rooms: Rooms,
        room_id: FromPath[str],
    ) -> dict[str, Any]:
        try:
            # deep nesting and invalid UTF-8 are DecodeErrors too (a 400, never a 500)
            body = json_input.decode(await request.body(), decoder=_add_member)
        except msgspec.DecodeError as exc:
            raise InvalidRequest(
                f'Body must be JSON {{"user": "<user id>"}}: {exc}', param="user"
            ) from None
        user = body.user.strip()
        limit = rooms.config.room_max_user_chars
        if not user or len(user) > limit:
            raise InvalidRequest(f"'user' must be 1 to {limit} characters.", param="user")
        try:
            room = await rooms.add_member(principal.sub, room_id, user)
        except RoomNotFound:
            raise _not_found(room_id) from None
        except RoomFull as exc:
            raise Conflict(str(exc), code=exc.code) from None
        return {"id": room.id, "members": sorted(room.members)}

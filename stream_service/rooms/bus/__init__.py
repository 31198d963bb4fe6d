"""The room bus: publish bytes to a channel, every subscriber on every node receives them.

``base`` holds the interface, ``memory`` the one-node bus, ``redis`` the Redis/Valkey one;
:func:`stream_service.rooms.bus.factory.build_bus` picks one from the settings.
"""

from stream_service.rooms.bus.base import Bus, BusHealth, BusMetrics, BusState, Subscription

__all__ = ["Bus", "BusHealth", "BusMetrics", "BusState", "Subscription"]

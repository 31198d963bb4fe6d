"""Realtime voice: OpenAI's Realtime protocol on ``/stream/v1/realtime`` (SPEC section 7).

session (event log, resume grace) · relay (``LLM_PROVIDER=openai``) · local/ (the offline
stand-in: VAD, speech recognition, speech) · protocol, limits, metrics. The stream service
mounts :func:`realtime_routes`.
"""

from stream_service.realtime.routes import RealtimeRoutes, realtime_routes
from stream_service.realtime.settings import RealtimeSettings, get_realtime_settings

__all__ = ["RealtimeRoutes", "RealtimeSettings", "get_realtime_settings", "realtime_routes"]

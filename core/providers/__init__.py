"""Model providers behind one small async interface (see :mod:`core.providers.base`)."""

from core.providers.base import Finish, ModelProvider, TokenDelta, UpstreamEvent
from core.providers.registry import build_provider

__all__ = ["Finish", "ModelProvider", "TokenDelta", "UpstreamEvent", "build_provider"]

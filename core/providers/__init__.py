"""Model providers behind one small async interface (see :mod:`core.providers.base`)."""

from core.providers.base import (
    Completion,
    Finish,
    ModelProvider,
    RichDelta,
    TokenDelta,
    UpstreamEvent,
)
from core.providers.registry import build_provider

__all__ = [
    "Completion",
    "Finish",
    "ModelProvider",
    "RichDelta",
    "TokenDelta",
    "UpstreamEvent",
    "build_provider",
]

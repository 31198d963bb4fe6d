"""What handlers may ask for by name (Litestar dependency injection): the services built
once by :func:`stream_service.app.create_app`."""

from __future__ import annotations

from typing import TypeAlias

from litestar.di import NamedDependency

from core.auth import UrlTokens
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine

# a handler parameter named ``engine`` annotated ``Engine`` gets the stream engine, etc.
Engine: TypeAlias = NamedDependency[StreamEngine]
AppSettings: TypeAlias = NamedDependency[Settings]
StreamConfig: TypeAlias = NamedDependency[StreamSettings]
Tokens: TypeAlias = NamedDependency[UrlTokens]

"""What handlers may ask for by name (Litestar dependency injection): the services built
once by :func:`stream_service.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class StreamServices:
    """What the handlers that start and read streams use, injected as one dependency
    (``streams``): Litestar resolves two or more dependencies of a handler in a task group
    (a task and a cancel scope each), which cost a tenth of a stream's start. These
    handlers take the caller from :func:`core.http.auth.provide_principal` in their body."""

    engine: StreamEngine
    settings: Settings
    config: StreamSettings
    url_tokens: UrlTokens


Streams: TypeAlias = NamedDependency[StreamServices]

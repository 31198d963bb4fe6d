from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.settings import Settings
from functions.api.app import create_app
from tests.support.servers import ThreadServer


@pytest.fixture
def api_server(settings: Settings) -> Iterator[ThreadServer]:
    """The REST app on a real uvicorn server on 127.0.0.1."""
    with ThreadServer(create_app(settings)) as server:
        yield server

"""Dependencies as named aliases: the store, the engine, the settings, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from tunesmith.errors import AuthenticationError
from tunesmith.infer.engine import Engine
from tunesmith.settings import Settings
from tunesmith.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_key(request: Request) -> None:
    """With keys configured, every /v1 route needs `Authorization: Bearer <key>`."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, k) for k in keys):
        raise AuthenticationError(
            "Incorrect API key provided." if token else "You didn't provide an API key.",
            "Pass it as `Authorization: Bearer <key>` (the OpenAI SDK's api_key).",
        )

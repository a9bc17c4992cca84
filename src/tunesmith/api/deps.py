"""Dependencies as named aliases: the store, the engine and the settings.

The API key is checked by the guard (api/guard.py), before any body is read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tunesmith.infer.engine import EngineFront
from tunesmith.settings import Settings
from tunesmith.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_engine(request: Request) -> EngineFront:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
EngineDep = Annotated[EngineFront, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

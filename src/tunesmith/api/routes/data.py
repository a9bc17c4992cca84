"""Training data inspection (a tunesmith extension over uploaded files): filled by the data page's owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["data"])

"""Training plans (a tunesmith extension): filled by the new-job page's owner."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["fine-tuning"])

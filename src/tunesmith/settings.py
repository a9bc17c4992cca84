"""Where tunesmith keeps its state, and the settings read from TUNESMITH_* environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNESMITH_", extra="ignore")

    home: Path = Field(
        default=Path("~/.tunesmith"),
        description="Folder holding every model cache, run, upload and the store; move it all with "
        "TUNESMITH_HOME.",
    )
    models_cache: Path | None = Field(
        default=None,
        description="Where built-in models are converted once; default HOME/models. Several homes "
        "(or test runs) can share one with TUNESMITH_MODELS_CACHE.",
    )
    org: str = Field(default="local", description="Organisation slug in fine-tuned model names.")
    max_upload_bytes: int = Field(default=512 * 1024**2, description="Largest accepted upload.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys the server accepts (TUNESMITH_API_KEYS, comma-separated); "
        "empty means no auth, and then the server listens on loopback only.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @cached_property
    def root(self) -> Path:
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def db_path(self) -> Path:
        return self.root / "tunesmith.db"

    @property
    def models_dir(self) -> Path:
        """Base models converted once (GGUF dequantised to safetensors)."""
        return self.models_cache.expanduser() if self.models_cache else self.root / "models"

    @property
    def runs_dir(self) -> Path:
        """One folder per fine-tuning job: checkpoints, adapter, metrics, plots."""
        return self.root / "runs"

    @property
    def files_dir(self) -> Path:
        """Uploaded and produced files, stored by id, never by the client's filename."""
        return self.root / "files"


def get_settings() -> Settings:
    """Settings are read on each call, never at import, so tests can move TUNESMITH_HOME."""
    return Settings()

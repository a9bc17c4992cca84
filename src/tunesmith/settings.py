"""Where tunesmith keeps its state, and the settings read from TUNESMITH_* environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

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
    database_url: str | None = Field(
        default=None,
        description="postgresql://USER:PASSWORD@HOST:PORT/DB to keep the store in PostgreSQL "
        "(psycopg 3), shared by workers on many hosts; they must share the home folder too. "
        "Unset: SQLite in HOME/tunesmith.db.",
    )
    lease_seconds: int = Field(
        default=60,
        gt=0,
        description="How long a job's runner may go without a heartbeat (it beats every quarter "
        "of this) before another host takes its job as crashed. On its own host a runner is "
        "dead when its pid is gone, whatever its lease.",
    )
    engine: Literal["builtin", "llamacpp", "vllm"] = Field(
        default="builtin",
        description="What decodes served requests: builtin (tunesmith's own, in torch), "
        "llamacpp (llama.cpp's llama-server, built once: infer/llama_server.py) or vllm (vLLM's "
        "server from a virtualenv of its own: infer/vllm_server.py). The API above the engine "
        "is the same.",
    )
    fast_decode: bool = Field(
        default=True,
        description="Decode Llama-family models on the slot cache (infer/slots.py: a decode "
        "step 1.1x to 2x faster than transformers' own forward at 16 to 1 rows, README's "
        "Performance); false serves every model through transformers' own forward.",
    )
    quantize: Literal["int8", "int4"] | None = Field(
        default=None,
        description="int8: weight-only int8 decoding on the slot cache; int4: a 4-bit "
        "checkpoint's weights (the built-in model's) held as 4-bit (opt-in: answers change a "
        "little with either).",
    )

    # --- what the server accepts: everything here is closed unless the operator opens it ---------
    max_upload_bytes: int = Field(default=512 * 1024**2, description="Largest accepted upload.")
    validation_memory_bytes: int = Field(
        default=4 * 1024**3,
        description="Address-space limit of the process that checks a job's files: a huge or "
        "hostile upload fails its own job, never the server.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024**2,
        description="Largest accepted request body other than an upload (POST /v1/files has "
        "max_upload_bytes); a larger one is refused with 413 before it is read.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys the server accepts (TUNESMITH_API_KEYS, comma-separated); "
        "empty means no auth, and then the server listens on loopback only.",
    )
    public_docs: bool = Field(
        default=False,
        description="Serve /docs and /openapi.json without a key even when keys are configured.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the server answers besides loopback and the address it is "
        "reached on (TUNESMITH_ALLOWED_HOSTS, comma-separated; `*` allows any). Refusing other "
        "Host headers stops DNS-rebinding pages from reaching a loopback server.",
    )
    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders whose model folders API clients may name (TUNESMITH_MODEL_DIRS, "
        "comma-separated). Other folders resolve only for the CLI.",
    )
    warm: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Models the server loads as it starts, in the background (TUNESMITH_WARM, "
        "comma-separated): their first request then waits for no load, conversion or engine "
        "server start. `serve` warms the built-in model on the llamacpp and vllm engines when "
        "none is named.",
    )
    hub_models: bool = Field(
        default=False,
        description="Let API clients name Hugging Face hub ids (the server then downloads them).",
    )
    any_model_folder: bool = Field(
        default=True,
        description="Resolve any local folder and hub id as a model: true for the CLI (the "
        "operator's own commands); the API server turns it off and keeps to model_dirs and "
        "hub_models.",
    )

    @field_validator("api_keys", "allowed_hosts", "model_dirs", "warm", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "TUNESMITH_DATABASE_URL must be a postgresql:// URL; unset it to use SQLite"
            )
        return value or None

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

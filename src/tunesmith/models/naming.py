"""Fine-tuned model names in OpenAI's form: ft:BASE:ORG:SUFFIX:ID, checkpoints add :ckpt-step-N."""

from __future__ import annotations

import re
import secrets
import string

from tunesmith.errors import TunesmithError

_ALPHABET = string.ascii_letters + string.digits
SUFFIX_MAX = 64


def short_id(n: int = 8) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def clean_suffix(suffix: str | None) -> str:
    """A suffix goes inside a colon-separated name: refuse what would break parsing."""
    if not suffix:
        return ""
    if len(suffix) > SUFFIX_MAX:
        raise TunesmithError(
            f"The suffix is {len(suffix)} characters long; at most {SUFFIX_MAX} are allowed.",
            "Pick a shorter suffix.",
            param="suffix",
        )
    if not re.fullmatch(r"[A-Za-z0-9._-]+", suffix):
        raise TunesmithError(
            f"The suffix {suffix!r} may hold only letters, digits, '.', '_' and '-'.",
            "Colons and spaces would break the model name ft:BASE:ORG:SUFFIX:ID.",
            param="suffix",
        )
    return suffix


def fine_tuned_name(base: str, org: str, suffix: str | None, model_id: str | None = None) -> str:
    # A local base given by path would put slashes and colons in the name: keep only its folder name.
    base_slug = base.rstrip("/").split("/")[-1].replace(":", "-")
    return f"ft:{base_slug}:{org}:{clean_suffix(suffix)}:{model_id or short_id()}"


def checkpoint_name(fine_tuned: str, step: int, model_id: str | None = None) -> str:
    """Each checkpoint has its own 8-char id, as OpenAI's do."""
    parts = fine_tuned.split(":")
    parts[4] = model_id or short_id()
    return ":".join(parts) + f":ckpt-step-{step}"

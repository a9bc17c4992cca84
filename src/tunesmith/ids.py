"""The one id helper: OpenAI-shaped ids (`file-…`, `ftjob-…`, `chatcmpl-…`, `cmp_…`)."""

from __future__ import annotations

import secrets
import string

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))

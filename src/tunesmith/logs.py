"""Logging for every process tunesmith starts (CLI, server, workers): warnings on stderr through
Rich, and the libraries' own progress bars and chatter turned off."""

from __future__ import annotations

import logging
import os

from rich.console import Console
from rich.logging import RichHandler


def quiet_libraries() -> None:
    """Library progress bars and warnings would drown the Rich display."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader uses tqdm directly
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        format="%(message)s",
    )
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass

"""Process-wide settings every entry point applies before loading ML libraries."""

import os

from core.base.paths import cache_dir


def configure_environment() -> None:
    """Keep hub and dataset caches out of the home folder and turn wandb off.

    Values the user has set already are kept.
    """
    os.environ.setdefault("HF_HOME", str(cache_dir() / "huggingface"))
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

"""Fail fast when the Hugging Face hub cannot be reached.

Hub clients retry for ~25 s before giving up. One short TCP probe tells us sooner, and lets
the error say what could not be fetched and how to use a local copy instead. What is in
the local cache is core.loading.hub_cache's question.
"""

from __future__ import annotations

import os
import socket
import time
from urllib.parse import urlparse

from core.errors import HubUnavailableError

PROBE_TIMEOUT_S = 3.0
_PROBE_TTL_S = 60.0
_last_probe: tuple[float, str | None] | None = None


def hub_problem() -> str | None:
    """Why the hub is unreachable, or None if it answers. Cached for a minute."""
    global _last_probe
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    now = time.monotonic()
    if _last_probe is not None and now - _last_probe[0] < _PROBE_TTL_S:
        return _last_probe[1]
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    problem = None
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        problem = f"{host} is unreachable ({exc.__class__.__name__}: {exc})"
    _last_probe = (now, problem)
    return problem


def require_hub(what: str, fix: str) -> None:
    """Raise a HubUnavailableError naming `what` and the `fix` if the hub cannot be reached."""
    problem = hub_problem()
    if problem is not None:
        raise HubUnavailableError(
            f"Could not fetch {what} from the Hugging Face hub: {problem}. To work offline, {fix}."
        )

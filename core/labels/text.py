"""What the label store accepts as text, and its error for anything it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

from core.errors import UserError

MAX_TEXT = 10_000
MAX_NAME = 200


class LabelStoreError(UserError):
    """Bad input to the label store: unknown set, bad name, feature out of range."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_text(what: str, value: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise LabelStoreError(f"{what} must be text.")
    if len(value) > limit:
        raise LabelStoreError(f"{what} is {len(value):,} characters; the limit is {limit:,}.")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise LabelStoreError(f"{what} contains control characters.")
    return value

"""What the label store accepts as text (and as tags: never a tag beside its negation), and
its error for anything it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

from core.errors import UserError

MAX_TEXT = 10_000
MAX_NAME = 200
NEGATION = "not "


def contradictions(tags: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """Pairs of tags where one is the other negated ("biology" and "not biology"), compared
    without case or extra spaces."""
    said = {" ".join(tag.split()).lower(): tag for tag in tags}
    return [
        (said[name[len(NEGATION) :]], tag)
        for name, tag in said.items()
        if name.startswith(NEGATION) and name[len(NEGATION) :] in said
    ]


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


def check_tags(feature: int, tags: list[str] | tuple[str, ...]) -> None:
    """Refuse tags of which one is another negated ("biology" and "not biology")."""
    if clash := contradictions(tags):
        said = "; ".join(f"'{tag}' and '{negated}'" for tag, negated in clash)
        raise LabelStoreError(
            f"Feature {feature}'s tags contradict each other ({said}): keep one of each pair. "
            "Nothing was saved."
        )

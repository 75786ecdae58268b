"""The feature search view: the statistics table joined with labels and the current set,
filtered the way the search page asks. Pure pandas, no streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.base.uncertainty import rate_ratio_interval
from core.labels.store import Label

VIEW_COLUMNS = [
    "feature",
    "forget_freq",
    "retain_freq",
    "ratio",
    "ratio_low",
    "forget_max",
    "retain_max",
    "label",
    "tags",
    "note",
    "in_set",
]


def search_view(
    table: pd.DataFrame,
    labels: dict[int, Label],
    in_set: set[int],
    variant: str,
    floor: float = 0.0,
    tokens: dict[str, int] | None = None,
) -> pd.DataFrame:
    """One row per feature with the chosen counting variant's columns, labels and set
    membership. The ratio's retain frequency is raised to `floor` (half a count), so a
    feature never seen on retain text ranks by its forget frequency instead of as ∞.
    `ratio_low` is the low end of the ratio's 95% interval from the counts and the tokens
    counted per corpus (`tokens`, "forget" and "retain"; NaN without them), so a feature
    ranks high on it only when enough firings back its ratio."""
    features = table["feature"].to_numpy()
    forget = table[f"forget_freq_{variant}"].to_numpy()
    retain = table[f"retain_freq_{variant}"].to_numpy()
    ratio = (
        forget / np.maximum(retain, floor) if floor > 0 else table[f"ratio_{variant}"].to_numpy()
    )
    ratio_low = np.full(len(features), np.nan)
    if tokens is not None:
        ratio_low, _ = rate_ratio_interval(
            table[f"forget_count_{variant}"].to_numpy(),
            tokens["forget"],
            table[f"retain_count_{variant}"].to_numpy(),
            tokens["retain"],
        )
    view = pd.DataFrame(
        {
            "feature": features,
            "forget_freq": table[f"forget_freq_{variant}"].to_numpy(),
            "retain_freq": table[f"retain_freq_{variant}"].to_numpy(),
            "ratio": ratio,
            "ratio_low": ratio_low,
            "forget_max": table[f"forget_max_{variant}"].to_numpy(),
            "retain_max": table[f"retain_max_{variant}"].to_numpy(),
            "label": [labels[f].label if f in labels else "" for f in features],
            "tags": [", ".join(labels[f].tags) if f in labels else "" for f in features],
            "note": [labels[f].note if f in labels else "" for f in features],
            "in_set": np.isin(features, list(in_set)),
        }
    )
    return view[VIEW_COLUMNS]


def filter_view(
    view: pd.DataFrame,
    text: str = "",
    tags: list[str] | None = None,
    min_forget_freq: float = 0.0,
    only_in_set: bool = False,
    only_labelled: bool = False,
) -> pd.DataFrame:
    """Rows matching every filter; text matches label or note (case-insensitive) or the
    feature id."""
    mask = view["forget_freq"].to_numpy() >= min_forget_freq
    if text.strip():
        needle = text.strip().lower()
        haystack = (view["label"] + "\n" + view["note"]).str.lower()
        mask &= (
            haystack.str.contains(needle, regex=False).to_numpy()
            | (view["feature"].astype(str) == needle).to_numpy()
        )
    if tags:
        mask &= (
            view["tags"].apply(lambda value: any(t in value.split(", ") for t in tags)).to_numpy()
        )
    if only_in_set:
        mask &= view["in_set"].to_numpy()
    if only_labelled:
        mask &= (view["label"] != "").to_numpy()
    return view[mask]


def label_edits(before: pd.DataFrame, after: pd.DataFrame) -> dict[int, dict[str, object]]:
    """The label, tags and note changes between two versions of the same rows."""
    edits: dict[int, dict[str, object]] = {}
    merged = before.set_index("feature")[["label", "tags", "note"]].join(
        after.set_index("feature")[["label", "tags", "note"]], rsuffix="_new", how="inner"
    )
    differs = np.zeros(len(merged), dtype=bool)  # rows worth a look: iterrows is slow
    for column in ("label", "tags", "note"):
        edited = merged[f"{column}_new"]
        edited = edited.where(edited.map(lambda value: isinstance(value, str)), "")
        differs |= (edited != merged[column]).to_numpy()
    for feature, row in merged[differs].iterrows():
        change: dict[str, object] = {}
        for column in ("label", "note"):
            new = row[f"{column}_new"] if isinstance(row[f"{column}_new"], str) else ""
            if new != row[column]:
                change[column] = new
        new_tags = row["tags_new"] if isinstance(row["tags_new"], str) else ""
        if new_tags != row["tags"]:
            change["tags"] = [tag.strip() for tag in new_tags.split(",") if tag.strip()]
        if change:
            edits[int(feature)] = change
    return edits


def membership_edits(before: pd.DataFrame, after: pd.DataFrame) -> tuple[set[int], set[int]]:
    """(added, removed) features from the in_set column of an edited table."""
    old = before.set_index("feature")["in_set"]
    new = after.set_index("feature")["in_set"].reindex(old.index)
    added = set(old.index[(~old) & new.astype(bool)].tolist())
    removed = set(old.index[old & ~new.astype(bool)].tolist())
    return added, removed


def frequency_floor(tokens: int) -> float:
    """Where a zero frequency is drawn on a log axis: half of one count in `tokens`."""
    return 0.5 / max(tokens, 1)


def floored(view: pd.DataFrame, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(forget, retain) frequencies with zeros raised to `floor`, for log axes."""
    return (
        np.maximum(view["forget_freq"].to_numpy(), floor),
        np.maximum(view["retain_freq"].to_numpy(), floor),
    )


def log_ratio(view: pd.DataFrame, floor: float) -> np.ndarray:
    """log10(forget / retain frequency), zeros floored (finite for every feature)."""
    forget, retain = floored(view, floor)
    return np.log10(forget / retain)

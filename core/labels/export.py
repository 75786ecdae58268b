"""Export and import of feature sets and labels (format: docs/export-format.md).

- JSON: our own versioned format with full provenance; importing it round-trips exactly.
- lm-evaluation-harness `steered` CSV: evaluate a set with lm-eval directly.
- Neuronpedia list payload, for SAEs that Neuronpedia hosts.
- Labels as CSV.
Imports validate everything before writing, and write in one transaction.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from core.labels.sets import check_gate_record, check_question_ids
from core.labels.store import Label, LabelStore
from core.labels.text import LabelStoreError
from core.loading.hub_cache import sae_registry
from core.workspace.workspace import Workspace

EXPORT_KIND = "unlearning-lens/feature-set"
EXPORT_VERSION = 1
MAX_IMPORT_BYTES = 5_000_000
# A formula start (= + - @ tab CR) at the start of a cell or after a separator that a
# spreadsheet in some locale splits on (, ; | tab), spaces between allowed.
FORMULA_START = re.compile(r"(^|[,;|\t])(\s*)(?=[=+\-@\t\r])")
STEERED_COLUMNS = (
    "loader",
    "action",
    "sparse_model",
    "hookpoint",
    "feature_index",
    "steering_coefficient",
    "sae_id",
    "description",
)


class ImportRejected(LabelStoreError):
    """An import that does not fit this workspace; nothing was written."""


def export_set(ws: Workspace, store: LabelStore, name: str) -> dict[str, Any]:
    """A feature set with its labels, the SAE's identity and the workspace's provenance."""
    feature_set = store.get_set(name)
    labels = store.labels(list(feature_set.features))
    return {
        "kind": EXPORT_KIND,
        "version": EXPORT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workspace": ws.config.provenance(),
        "provenance": ws.provenance(),
        "sae": {
            "identity": store.identity,
            "d_sae": store.d_sae,
            "hook": ws.hook,
            "weights": ws.sae_fingerprint(),
        },
        "set": {
            "name": feature_set.name,
            "note": feature_set.note,
            "selection": feature_set.selection,
            "results": feature_set.results,
            "created_at": feature_set.created_at,
            "features": [
                {
                    "feature": feature,
                    "multiplier": multiplier,
                    "note": note,
                    "label": _label_record(labels.get(feature)),
                }
                for feature, multiplier, note in zip(
                    feature_set.features, feature_set.multipliers, feature_set.notes, strict=True
                )
            ],
        },
    }


def _label_record(label: Label | None) -> dict[str, Any] | None:
    if label is None:
        return None
    return {
        "label": label.label,
        "note": label.note,
        "tags": list(label.tags),
        "author": label.author,
        "updated_at": label.updated_at,
    }


def _weights(key: str) -> str:
    """A weights key short enough to read: its hash's start (after a registry name)."""
    return key.rpartition("@")[2][:23]


def parse_import(raw: bytes | str, store: LabelStore, force: bool = False) -> dict[str, Any]:
    """Validate an exported JSON against this SAE (its weights, unless `force`, and its
    width); return the payload or raise with a reason."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise ImportRejected(
            f"The file is {len(raw):,} bytes; imports are limited to {MAX_IMPORT_BYTES:,}."
        )
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportRejected(f"Not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise ImportRejected("Not an export: the JSON is nested too deeply.") from exc
    if not isinstance(payload, dict) or payload.get("kind") != EXPORT_KIND:
        raise ImportRejected("Not an Unlearning Lens feature-set export (missing 'kind').")
    if payload.get("version") != EXPORT_VERSION:
        raise ImportRejected(
            f"Export version {payload.get('version')!r}; this app reads version {EXPORT_VERSION}."
        )
    sae = payload.get("sae")
    if not isinstance(sae, dict):
        raise ImportRejected("The export has no 'sae' object saying which SAE it was made for.")
    if sae.get("d_sae") != store.d_sae:
        raise ImportRejected(
            f"This set was made for SAE {sae.get('identity')!r} ({sae.get('d_sae')} features), "
            f"not this workspace's {store.identity!r} ({store.d_sae} features). Open the "
            "workspace it came from, or re-select the features here."
        )
    if sae.get("weights") != store.sae and not force:
        theirs, ours = str(sae.get("weights")), store.sae
        raise ImportRejected(
            f"This set was made for SAE {sae.get('identity')!r} with weights "
            f"{_weights(theirs)!r}, not this workspace's {store.identity!r} "
            f"({_weights(ours)!r}): the same feature ids may mean other features (an SAE "
            "retrained or re-uploaded in place). "
            + (
                "The export names its registry SAE without a hash of its files (made by an "
                "earlier version), so they cannot be compared. "
                if theirs.startswith("sae-lens:") and "@" not in theirs
                else ""
            )
            + "Import anyway with --force (or the page's checkbox)."
        )
    body = payload.get("set")
    if not isinstance(body, dict):
        raise ImportRejected("The export has no 'set' object.")
    for key, kind, what in (
        ("name", str, "text"),
        ("note", str, "text"),
        ("created_at", str, "text"),
        ("selection", dict, "an object"),
        ("results", list, "a list"),
    ):
        if key in body and not isinstance(body[key], kind):
            raise ImportRejected(f"The set's '{key}' must be {what}, not {body[key]!r:.60}.")
    selection = body.get("selection", {})
    try:
        if "gate" in selection:
            check_gate_record(selection["gate"])
        if "question_ids" in selection:
            check_question_ids(selection["question_ids"])
    except LabelStoreError as exc:
        raise ImportRejected(str(exc)) from exc
    entries = body.get("features")
    if not isinstance(entries, list) or not entries:
        raise ImportRejected("The set has no features.")
    seen: set[int] = set()
    for index, entry in enumerate(entries):
        feature = entry.get("feature") if isinstance(entry, dict) else None
        if not isinstance(feature, int) or isinstance(feature, bool):
            raise ImportRejected(f"Entry {index}: feature id {feature!r} is not an integer.")
        if not 0 <= feature < store.d_sae:
            raise ImportRejected(
                f"Entry {index}: feature {feature} is out of range (0-{store.d_sae - 1})."
            )
        if feature in seen:
            raise ImportRejected(f"Entry {index}: feature {feature} appears twice.")
        seen.add(feature)
    return payload


def import_set(
    store: LabelStore,
    raw: bytes | str,
    name: str | None = None,
    overwrite: bool = False,
    force: bool = False,
) -> str:
    """Import an exported set (and its labels). All or nothing; returns the set's name.
    `force` accepts a set made for other weights of an SAE of the same width."""
    payload = parse_import(raw, store, force)
    body = payload["set"]
    entries = body["features"]
    labels = {
        entry["feature"]: entry["label"]
        for entry in entries
        if isinstance(entry.get("label"), dict)
    }
    try:
        store.save_set(
            name or body.get("name", ""),
            [entry["feature"] for entry in entries],
            [entry.get("multiplier", 1.0) for entry in entries],
            notes=[entry.get("note", "") for entry in entries],
            note=body.get("note", ""),
            selection=body.get("selection", {}),
            results=body.get("results", []),
            created_at=body.get("created_at") or None,
            labels=labels,
            overwrite=overwrite,
        )
    except LabelStoreError as exc:
        raise ImportRejected(str(exc)) from exc
    return name or body["name"]


def hf_hookpoint(hook: str) -> str:
    """The Hugging Face module lm-eval hooks for a TransformerLens hook point."""
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook)
    if not match:
        raise LabelStoreError(f"lm-eval steering needs a residual hook, not {hook}.")
    layer = int(match.group(1))
    if match.group(2) == "pre":
        if layer == 0:
            raise LabelStoreError("blocks.0.hook_resid_pre has no decoder-layer output to hook.")
        layer -= 1
    return f"layers.{layer}"


def steered_csv(
    ws: Workspace,
    store: LabelStore,
    name: str,
    clamp_value: float,
    feature: int | None = None,
    ungated: bool = False,
) -> str:
    """lm-eval `steered` CSV (what `SteeredModel.derive_steer_config` reads) for one feature
    of a set: the set's only feature, or `feature`. lm-eval keeps one steering entry per hook
    point and loads SAEs from the sae-lens registry, so a set of several features, or an SAE
    that is not in the registry, is refused with the reason (docs/export-format.md says what
    lm-eval's clamp does differently from this product's). lm-eval cannot gate, so a gated
    set is refused unless `ungated` asks for its ungated equivalent (labelled so)."""
    if not math.isfinite(clamp_value) or clamp_value < 0:
        raise LabelStoreError(
            f"c = {clamp_value} cannot be exported: c is a finite size ≥ 0 (the feature is "
            "clamped to −c × its multiplier)."
        )
    sae = ws.config.sae
    if sae.source != "sae-lens":
        raise LabelStoreError(
            "lm-eval's steered model loads SAEs by sae-lens release and id "
            "(SAE.from_pretrained); this workspace's SAE is local or trained here, so lm-eval "
            "cannot load it. Evaluate the set here instead (`python -m core eval --set`)."
        )
    feature_set = store.get_set(name)
    if feature_set.gate is not None and not ungated:
        raise LabelStoreError(
            f"'{name}' is gated (DSG: it edits only sequences where the features fire on more "
            f"than {feature_set.gate['alpha']:.3g} of the positions), and lm-eval's steered "
            "model cannot gate. Export its ungated equivalent (--ungated, labelled so in the "
            "file) or evaluate the gated set here (`python -m core eval --set`)."
        )
    if feature is None and len(feature_set.features) > 1:
        raise LabelStoreError(
            f"'{name}' has {len(feature_set.features)} features, but lm-eval's steered model "
            "keeps one steering entry per hook point (later rows replace earlier ones): export "
            "one feature at a time (--feature N), or evaluate the whole set here."
        )
    chosen = feature_set.features[0] if feature is None else feature
    if chosen not in feature_set.features:
        raise LabelStoreError(f"Feature {chosen} is not in the set '{name}'.")
    multiplier = feature_set.multiplier(chosen)
    if multiplier < 0:
        raise LabelStoreError(
            f"Feature {chosen} of '{name}' has a negative multiplier: clamped to a positive "
            "value it would be amplified, not ablated. Fix the multiplier first."
        )
    label = store.labels([chosen]).get(chosen)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STEERED_COLUMNS)
    writer.writerow(
        [
            "sae_lens",
            "clamp",
            sae.release,
            hf_hookpoint(sae.hook),
            chosen,
            -clamp_value * multiplier,
            sae.id or "",
            spreadsheet_safe(
                ("UNGATED equivalent of a gated set: " if feature_set.gate else "")
                + (label.label if label else "")
            ),
        ]
    )
    return out.getvalue()


def neuronpedia_payload(ws: Workspace, store: LabelStore, name: str) -> dict[str, Any]:
    """A Neuronpedia list: model id, SAE (source) id and the features with descriptions."""
    sae = ws.config.sae
    if sae.source != "sae-lens":
        raise LabelStoreError(
            "Neuronpedia hosts public SAEs only; this workspace's SAE is local or trained here."
        )
    release = sae_registry()[sae.release or ""]
    neuronpedia_id = (release.neuronpedia_id or {}).get(sae.id or "")
    if not neuronpedia_id:
        raise LabelStoreError(f"Neuronpedia has no entry for {sae.release} / {sae.id}.")
    model_id, source = neuronpedia_id.split("/", 1)
    feature_set = store.get_set(name)
    labels = store.labels(list(feature_set.features))
    return {
        "name": feature_set.name,
        "description": feature_set.note,
        "modelId": model_id,
        "saeId": source,
        "features": [
            {
                "modelId": model_id,
                "layer": source,
                "index": str(feature),
                "description": labels[feature].label if feature in labels else "",
            }
            for feature in feature_set.features
        ],
    }


def spreadsheet_safe(text: str) -> str:
    """Text a spreadsheet shows as text in any locale: an apostrophe goes before each
    formula start (= + - @, tab, CR) at the start or after a separator (, ; | tab), as
    one in a `;` locale reads `ok;=1+1` as two cells, the second a formula."""
    return FORMULA_START.sub(r"\1\2'", text)


def labels_csv(store: LabelStore) -> str:
    """Every label of the store's SAE, one row per feature, safe to open in a spreadsheet
    (every text cell quoted, formula starts neutralised)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(["sae", "feature", "label", "note", "tags", "author", "updated_at"])
    for feature, label in sorted(store.labels().items()):
        writer.writerow(
            [
                store.identity,
                feature,
                *map(spreadsheet_safe, (label.label, label.note, ";".join(label.tags))),
                spreadsheet_safe(label.author),
                label.updated_at,
            ]
        )
    return out.getvalue()

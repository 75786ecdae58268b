"""Suggested labels: a proposal built from a feature's evidence (its top activating tokens
and their contexts, the tokens its decoder direction promotes), or imported from
Neuronpedia's exported explanations. The user accepts or edits one; nothing here writes a
label."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.features.examples import FeatureActivations, logit_effects, token_strings
from core.labels.store import LabelStore
from core.workspace.workspace import Workspace

EVIDENCE_SOURCE = "evidence: top activating tokens and logit effects"
NEURONPEDIA_SOURCE = "Neuronpedia explanations"
EXPLANATIONS_FILE = "explanations.json"


def evidence_suggestion(ws: Workspace, feature: int, k: int = 10) -> tuple[str, dict]:
    """(suggested label, the evidence it was built from): the tokens the feature fires on
    most often among its top contexts on both corpora, and the tokens it promotes."""
    fired_on: Counter[str] = Counter()
    contexts = []
    for role in ("forget_corpus", "retain_corpus"):
        read = FeatureActivations.read(SparseActivationStore.for_workspace(ws, role), feature)
        for context in read.top(k, left=8, right=2):
            strings = token_strings(ws, context.token_ids)
            fired_on[strings[context.mark].strip()] += 1
            contexts.append(
                {"corpus": role, "value": round(context.value, 3), "text": "".join(strings)}
            )
    promote, _ = logit_effects(ws, feature, k=5)
    top_tokens = [token for token, _ in fired_on.most_common(5) if token]
    promoted = [token.strip() for token, _ in promote if token.strip()]
    if not top_tokens:
        text = "never fires on the cached text"
    else:
        text = "fires on " + ", ".join(f"'{t}'" for t in top_tokens)
        if promoted:
            text += "; promotes " + ", ".join(f"'{t}'" for t in promoted[:3])
    evidence = {
        "top_tokens": fired_on.most_common(10),
        "contexts": contexts[: 2 * k],
        "promotes": promote,
    }
    return text, evidence


def neuronpedia_explanations(path: Path, d_sae: int) -> dict[int, tuple[str, dict]]:
    """Neuronpedia's exported explanations (a JSON list of {index, description, ...}) as
    suggestions {feature: (description, the record's other fields)}; the first per feature."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read the explanations file {path}: {exc}") from exc
    if isinstance(records, dict):
        records = records.get("explanations", [])
    if not isinstance(records, list):
        raise UserError(f"{path} is not a list of Neuronpedia explanations.")
    found: dict[int, tuple[str, dict]] = {}
    for record in records:
        try:
            feature, text = int(record["index"]), str(record["description"]).strip()
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"{path}: an explanation without index or description ({exc})."
            ) from exc
        if 0 <= feature < d_sae and text and feature not in found:
            extra = {k: v for k, v in record.items() if k not in ("index", "description")}
            found[feature] = (text, extra)
    return found


def import_explanations(ws: Workspace, store: LabelStore, path: Path | None = None) -> int:
    """Store a Neuronpedia explanations file (default: explanations.json in the workspace's
    folder) as suggestions; returns how many."""
    path = path or ws.folder / EXPLANATIONS_FILE
    if not path.exists():
        raise UserError(f"No explanations file at {path}.")
    return store.put_suggestions(NEURONPEDIA_SOURCE, neuronpedia_explanations(path, store.d_sae))


def suggest(ws: Workspace, store: LabelStore, feature: int) -> str:
    """Build the evidence suggestion of one feature and store it (as a suggestion)."""
    store.check_feature(feature)
    text, evidence = evidence_suggestion(ws, feature)
    store.put_suggestions(EVIDENCE_SOURCE, {feature: (text, evidence)})
    return text

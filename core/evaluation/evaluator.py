"""Evaluate an intervention: WMDP-bio accuracy and its side effects (METHOD §6–§7).

    ev = Evaluator(ws, EvalSettings(question_limit=200))
    result = ev.evaluate(Intervention(features=(12, 40), values=(20.0, 20.0)))
    result["metrics"]["wmdp_known_accuracy"], result["metrics"]["loss_added"]

Clean scores and losses are computed once per (workspace, settings) and kept on disk; every
evaluated intervention is memoised on disk too, so sweeps and page reruns never recompute.
The questions scored are core.evaluation.protocol's, the k-shot examples k_shot's, the loss
rows loss's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from core.base.records import read_memo, record_key, write_json
from core.evaluation.gate_calibration import calibration_text, refuse_scored_calibration
from core.evaluation.gate_rates import GATED_SETS, gate_rates, mark_gated
from core.evaluation.k_shot import shot_examples
from core.evaluation.known import (
    VARIANTS,
    WITHOUT_QUESTION,
    KnownSet,
    build_known,
    known_key,
    stored_known,
)
from core.evaluation.loss import LossText, describe_loss_text, loss_text, row_losses
from core.evaluation.mcq import SCORINGS, Scorer
from core.evaluation.metrics import compare, k_shot_metrics
from core.evaluation.protocol import LookLedger, QuestionProtocol, overlap_note
from core.evaluation.settings import FORGET, LOSS_SETS, SHOTS_RULE, SIDE, SPLITS, EvalSettings
from core.interventions.calibration import RETAIN_ROWS, CalibrationText, calibrate, kept_gate
from core.interventions.edits import Intervention, applied
from core.interventions.gate import Gate
from core.loading import data
from core.loading.data import Question
from core.loading.hub_cache import library_versions
from core.runtime.gate_record import recording
from core.workspace.workspace import Workspace

RESULT_KIND = "unlearning-lens/eval"
RESULT_VERSION = 1
RESULT_FIELDS = {
    "kind": str,
    "created_at": str,
    "provenance": dict,
    "intervention": dict,
    "metrics": dict,
    "warnings": list,
    "questions": list,
}

Progress = Callable[[str, float], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Evaluator:
    """Scores the clean and intervened model on one workspace with fixed settings."""

    def __init__(self, ws: Workspace, settings: EvalSettings | None = None):
        self.ws = ws
        self.settings = settings or EvalSettings()
        self.settings.check()
        self.folder = ws.folder / "evals"
        self.protocol = QuestionProtocol(ws, self.settings)
        self._gate_texts: dict[str, CalibrationText | None] = {}  # per calibration

    # -- inputs -------------------------------------------------------------------------

    @cached_property
    def scorer(self) -> Scorer:
        return Scorer(
            self.ws.model, self.ws.tokenizer, self.ws.config.model.chat_template, self.scoring
        )

    @property
    def scoring(self) -> str:
        return self.settings.scoring

    def questions(self, role: str) -> list[Question]:
        """The questions of this evaluator's split, in the sample's order."""
        return self.protocol.split_questions[role]

    @cached_property
    def _shots(self) -> dict[str, dict[str, list[Question]]]:
        """Per role and subject the k-shot examples (none when k = 0)."""
        return shot_examples(self.protocol)

    def model_record(self) -> dict:
        cfg = self.ws.config.model
        return {
            "model": cfg.name,
            "source": cfg.source,
            "weights": cfg.package or cfg.path or cfg.name,
            "fingerprint": self.ws.model_fingerprint,
            "libraries": library_versions(),
            "dtype": cfg.dtype,
            "device": self.ws.device,
            "chat_template": cfg.chat_template,
        }

    def known_key_record(self, role: str) -> dict:
        """What the known record of `role` depends on, besides its questions."""
        return {**self.model_record(), "scoring": self.scoring, "role": role}

    def known_path(self, role: str) -> Path:
        """One record per question set: samples of other sizes or seeds keep their own."""
        key = known_key(self.protocol.sampled_questions[role], self.known_key_record(role))
        return self.ws.folder / "known" / f"{role}-{record_key(key)}.json"

    def known(self, role: str, progress: Progress | None = None) -> KnownSet:
        """The known-question record of the whole sample (both splits: 24 orderings, clean
        model; cached on disk)."""
        report = None if progress is None else (lambda d, t: progress(f"known {role}", d / t))
        return build_known(
            self.scorer,
            self.protocol.sampled_questions[role],
            self.known_path(role),
            self.known_key_record(role),
            without_question=self.settings.known_variant == "correct-iff-question",
            progress=report,
        )

    def known_state(self, role: str) -> str | None:
        """A hash of the stored known record of this sample (its key and the passes the
        variant reads); None when the record or a pass it needs is missing."""
        questions = self.protocol.sampled_questions[role]
        stored = stored_known(questions, self.known_path(role), self.known_key_record(role))
        iff = self.settings.known_variant == "correct-iff-question"
        passes = ["with_question"] + [WITHOUT_QUESTION] * iff
        if any(name not in stored for name in passes):
            return None
        return record_key([stored["key"], *(stored[name] for name in passes)])

    def has_known(self, role: str) -> bool:
        return self.known_state(role) is not None

    def known_indices(self, role: str, progress: Progress | None = None) -> np.ndarray | None:
        """Positions in `questions(role)` of its known questions (the variant's); None when
        the filter has not run and the settings do not ask to run it."""
        if not self.settings.known_filter and not self.has_known(role):
            return None
        known = self.known(role, progress).indices(self.settings.known_variant)
        return np.flatnonzero(np.isin(self.protocol.split_indices(role), known))

    @cached_property
    def loss_text(self) -> LossText:
        return loss_text(self.ws, self.settings)

    def gate(
        self, features: list[int], percentile: float, rule: str, on: str, kept: dict | None = None
    ) -> tuple[Gate, bool]:
        """The gate asked for (METHOD §10) and whether it is `kept`, a set's kept gate, which
        it is when that is the same gate (`kept_gate`); else one calibrated on `on` (a key
        of CALIBRATIONS) for these questions."""
        if (gate := kept_gate(self.ws, kept, features, percentile, rule, on)) is not None:
            return gate, True
        if on not in self._gate_texts:
            encoded = on != RETAIN_ROWS  # the retain rows need no prompt
            text = calibration_text(self.protocol, self.scorer, on) if encoded else None
            self._gate_texts[on] = text
        return calibrate(self.ws, features, percentile, rule, text=self._gate_texts[on]), False

    # -- runs ---------------------------------------------------------------------------

    def _run(self, iv: Intervention | None, progress: Progress | None) -> dict:
        """Scores of both question sets and row losses of each text, under `iv`; when it is
        gated, its hook's decision on every sequence of these passes ("gate", and "gate_k"
        for the k-shot prompts)."""
        out: dict = {"scores": {}, "losses": {}}
        ws, per = self.ws, 1 if self.scoring == "letter" else 4  # sequences per question
        gate = iv is not None and iv.gate is not None
        with applied(ws.model, ws.sae, ws.hook, iv):
            for role in (FORGET, SIDE):
                report = None if progress is None else (lambda d, t, r=role: progress(r, d / t))
                n = len(self.questions(role)) * per
                with recording() as record:
                    scores = self.scorer.score(self.questions(role), report)
                out["scores"][role] = scores.probs.tolist()
                if gate:
                    out.setdefault("gate", {})[GATED_SETS[role]] = record.decisions(n).tolist()
                if self.settings.shots:  # a gate reads whole sequences: no shared prefix
                    with recording() as record:
                        scores = self.scorer.score(
                            self.questions(role), None, self._shots[role], not gate
                        )
                    out.setdefault("scores_k", {})[role] = scores.probs.tolist()
                    if gate:
                        decided = record.decisions(n).tolist()
                        out.setdefault("gate_k", {})[GATED_SETS[role]] = decided
            measured: dict[bytes, tuple] = {}  # the same rows (one text, two roles) once
            for name, rows in self.loss_text.rows.items():
                stage = f"loss on {LOSS_SETS[name][1]}"
                report = None if progress is None else (lambda d, t, s=stage: progress(s, d / t))
                if report:
                    report(0, 1)
                if rows.tobytes() not in measured:
                    with recording() as record:
                        losses = row_losses(ws.model, rows, report=report).tolist()
                        measured[rows.tobytes()] = (losses, record)
                losses, record = measured[rows.tobytes()]
                out["losses"][name] = losses
                if gate:
                    out["gate"][f"{name}_text"] = record.decisions(len(rows)).tolist()
        return out

    @cached_property
    def _data_fingerprints(self) -> dict[str, str]:
        """Content hashes of the questions and texts every run reads (a changed file, e.g.
        re-keyed answers, or a hub dataset's new commit, never reuses a memo). The questions
        are loaded first: a hub dataset is then prepared and its commit known, so the key
        does not move after the first run."""
        _ = self.protocol.sampled_questions
        roles = (FORGET, SIDE, *(role for role, _ in LOSS_SETS.values()))
        return {role: data.fingerprint(self.ws.config, role) for role in dict.fromkeys(roles)}

    def _key(self) -> dict:
        return {
            "workspace": self.ws.config.provenance_hash(),
            "sae": self.ws.sae_fingerprint(),
            "model": self.ws.model_fingerprint,
            "libraries": library_versions(),
            "data": self._data_fingerprints,
            "settings": self.settings.key(),
            "version": RESULT_VERSION,
        }

    def baseline_path(self) -> Path:
        return self.folder / f"baseline-{record_key(self._key())}.json"

    def baseline(self, progress: Progress | None = None) -> dict:
        """The clean model's scores and losses (computed once, kept on disk)."""
        path = self.baseline_path()
        if (kept := read_memo(path, check=self._baseline_problem)) is not None:
            return kept
        result = self._run(None, progress)
        write_json(path, result)
        return result

    def result_path(self, iv: Intervention) -> Path:
        known = [self.known_state(role) for role in (FORGET, SIDE)]
        return self.folder / f"run-{record_key([self._key(), iv.record(), known])}.json"

    def _baseline_problem(self, memo: dict) -> str | None:
        """What a kept baseline lacks of the lists runs are compared with, if anything."""
        roles = (FORGET, SIDE)
        parts = {"scores": roles, "losses": tuple(LOSS_SETS)}
        if self.settings.shots:
            parts["scores_k"] = roles
        missing = [
            f"{part}.{name}"
            for part, names in parts.items()
            for name in names
            if not isinstance(memo.get(part), dict) or not isinstance(memo[part].get(name), list)
        ]
        return f"no {', '.join(missing)}" if missing else None

    def cached(self, iv: Intervention) -> dict | None:
        return read_memo(self.result_path(iv), RESULT_FIELDS, version=RESULT_VERSION)

    def evaluate(
        self,
        iv: Intervention,
        progress: Progress | None = None,
        chosen_on: dict[str, list[str]] | None = None,
        allow_overlap: bool = False,
    ) -> dict:
        """Baseline vs intervened metrics, per-question drill-down and provenance. Features
        chosen on the questions `chosen_on` (per role their ids) are refused on any of them
        unless `allow_overlap`, and the result is then labelled "optimistic" (not memoised:
        the memo holds the numbers only)."""
        iv.check(self.ws.sae_width())
        note = overlap_note(self.protocol, chosen_on, allow_overlap)
        refuse_scored_calibration(self.protocol, iv)
        result = self.cached(iv) or self._measure(iv, progress)
        return result if note is None else result | {"optimistic": note}

    def shown(
        self, iv: Intervention, chosen_on: dict[str, list[str]], allow_overlap: bool
    ) -> dict | None:
        """The memoised result of `iv` as a person is shown it (labelled and refused as
        `evaluate` does, stamped by `look`); None when it is not memoised."""
        note = overlap_note(self.protocol, chosen_on, allow_overlap)
        result = self.cached(iv)
        if result is None:
            return None
        return self.look(iv, result if note is None else result | {"optimistic": note})

    def look(self, iv: Intervention, result: dict) -> dict:
        """`result` (of `iv`) as a person is shown it: entered in the workspace's look
        ledger and stamped with its look ("looks", see `protocol.LookLedger`)."""
        key = self.result_path(iv).stem
        return result | {
            "looks": LookLedger(self.ws.folder).look(iv.features, self.settings.split, key)
        }

    def _measure(self, iv: Intervention, progress: Progress | None) -> dict:
        _ = self._shots  # k larger than the examples: refused before anything runs
        known = {role: self.known_indices(role, progress) for role in (FORGET, SIDE)}
        clean = self.baseline(progress)
        edited = self._run(iv, progress)
        result = {
            "kind": RESULT_KIND,
            "version": RESULT_VERSION,
            "created_at": _now(),
            "provenance": self.provenance(),
            "intervention": iv.record(),
            **compare(
                self.protocol.split_questions,
                self.ws.config.source(SIDE).apart,
                clean,
                edited,
                known,
                self.settings.min_known,
            ),
        }
        if "gate" in edited:
            sizes = {role: len(self.questions(role)) for role in (FORGET, SIDE)}
            mark_gated(result["questions"], edited["gate"], sizes)
            result["metrics"]["gate"] = gate_rates(edited["gate"])
        if self.settings.shots:
            result["metrics"]["k_shot"] = k_shot_metrics(
                self.protocol.split_questions,
                self.ws.config.source(SIDE).apart,
                clean,
                edited,
                known,
                self.settings.shots,
                self.settings.min_known,
            )
            if "gate_k" in edited:  # longer prompts: their own decisions
                result["metrics"]["k_shot"]["gate"] = gate_rates(edited["gate_k"])
        write_json(self.result_path(iv), result)
        return result

    def provenance(self) -> dict:
        return {
            **self.ws.provenance(),
            "sae_fingerprint": self.ws.sae_fingerprint(),
            "settings": asdict(self.settings),
            "split_rule": SPLITS[self.settings.split],
            **({"shots_rule": SHOTS_RULE} if self.settings.shots else {}),
            "scoring_rule": SCORINGS[self.scoring],
            "known_rule": VARIANTS[self.settings.known_variant],
            "questions": {role: len(self.questions(role)) for role in (FORGET, SIDE)},
            "loss_text": describe_loss_text(self.ws, self.settings, self.loss_text),
        }

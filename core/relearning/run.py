"""A relearning run (METHOD §14), memoised on disk:

    result = relearn(ws, iv, RelearnSettings(steps=20, rows=32))
    summary = summarise(result)       # core.relearning.summary

Three arms fine-tune their own copy of the model from the same seed: "relearn" on forget
text with the edit active (the attack), "control" on retain text with the edit active
(generic drift), and "reference" on the same forget text without the edit (what fine-tuning
alone does to a model that never unlearned). Fine-tuning reads the *training* documents of
each corpus; every loss is measured on the evaluation's held-out rows, which share no
document with them. Each arm's tuned weights are kept beside the result, keyed with it.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.base.records import read_memo, record_key, write_atomic, write_json
from core.errors import UserError
from core.evaluation.loss import loss_text, row_losses
from core.evaluation.mcq import Scorer
from core.evaluation.protocol import QuestionProtocol
from core.evaluation.settings import FORGET, SIDE, EvalSettings
from core.interventions.edits import Intervention, applied
from core.loading import data
from core.loading.hub_cache import library_versions
from core.relearning.finetune import (
    DEFAULT_LR,
    KINDS,
    frozen_copy,
    train,
    trainable_state,
    tunable_copy,
)
from core.runtime.jobs import Report

if TYPE_CHECKING:
    from core.workspace.workspace import Workspace

RELEARN_VERSION = 1
ROLES = {"forget": "forget_corpus", "retain": "retain_corpus"}
ARMS = {
    "relearn": ("forget", True, "forget text, edit active (the relearning attack)"),
    "control": ("retain", True, "retain text, edit active (control: generic drift)"),
    "reference": ("forget", False, "forget text, no edit (what fine-tuning alone does)"),
}
ROWS_STREAM = 6  # the training rows' random stream
MAX_SEED = 2**31 - 1  # the page's largest; numpy refuses a negative seed, torch a huge one


@dataclass(frozen=True)
class RelearnSettings:
    """How each arm fine-tunes and what is measured.

    Args:
        steps: optimiser steps per arm.
        rows: training rows per arm (of `context_length` tokens, BOS first).
        context_length: tokens per training row.
        batch_rows: rows per step.
        lr: AdamW learning rate; None for the kind's default (DEFAULT_LR).
        kind: a key of finetune.KINDS.
        rank: the LoRA rank.
        checkpoints: losses are measured at this many evenly spaced steps after step 0.
        eval_rows: held-out rows per corpus every loss is measured on.
        mcq: questions per set scored (selection split) before and after; 0: not scored.
        seed: the seed of the rows, the adapters' initialisation and the batches.
    """

    steps: int = 20
    rows: int = 32
    context_length: int = 64
    batch_rows: int = 4
    lr: float | None = None
    kind: str = "lora"
    rank: int = 8
    checkpoints: int = 4
    eval_rows: int = 16
    mcq: int = 0
    seed: int = 0

    @property
    def rate(self) -> float:
        return DEFAULT_LR[self.kind] if self.lr is None else self.lr

    def check(self, n_ctx: int | None = None) -> None:
        """Refuse what cannot run; `n_ctx` (the model's) once it is loaded."""
        if self.kind not in KINDS:
            raise UserError(f"Unknown fine-tuning '{self.kind}'; choose one of {', '.join(KINDS)}.")
        if self.steps < 0:
            raise UserError(f"--steps must be 0 or more, not {self.steps}.")
        if self.batch_rows < 1 or self.rows < self.batch_rows:
            raise UserError(
                f"Fine-tuning needs at least one row per step and as many rows as a step takes "
                f"(rows {self.rows}, rows per step {self.batch_rows})."
            )
        if not 8 <= self.context_length <= (n_ctx or self.context_length):
            limit = f"8 to {n_ctx}" if n_ctx else "at least 8"
            raise UserError(f"Training rows need {limit} tokens, not {self.context_length}.")
        if not (math.isfinite(self.rate) and 0 < self.rate < 1):
            raise UserError(f"The learning rate must be above 0 and below 1, not {self.rate}.")
        if self.rank < 1 or self.checkpoints < 1 or self.eval_rows < 2 or self.mcq < 0:
            raise UserError(
                "The LoRA rank and checkpoints must be at least 1, held-out rows at least 2 "
                "(a standard error needs two), and questions 0 or more."
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be 0 to {MAX_SEED}, not {self.seed}.")

    def measured_steps(self) -> list[int]:
        """Step 0 and `checkpoints` evenly spaced steps up to the last."""
        return sorted(
            {round(self.steps * i / self.checkpoints) for i in range(self.checkpoints + 1)}
        )

    def eval_settings(self) -> EvalSettings:
        """The held-out rows (and selection-split questions) every loss and score is on."""
        return EvalSettings(
            split="selection",
            question_limit=2 * self.mcq or None,
            loss_rows=self.eval_rows,
            known_filter=False,
        )


def relearn_documents(ws: Workspace, role: str) -> list[str]:
    """The documents a relearning arm fine-tunes on: the corpus's training documents, never
    the held-out ones evaluations measure on."""
    train_docs, _ = ws.documents_split(role)
    if not train_docs:
        raise UserError(f"The {role.replace('_', ' ')} has no training documents to fine-tune on.")
    return train_docs


def training_rows(ws: Workspace, settings: RelearnSettings, corpus: str) -> np.ndarray:
    docs = relearn_documents(ws, ROLES[corpus])
    rows = ws.token_rows(docs, settings.context_length, settings.rows, settings.seed + ROWS_STREAM)
    if len(rows) < settings.batch_rows:
        raise UserError(
            f"The {corpus} corpus's training documents make {len(rows)} rows of "
            f"{settings.context_length} tokens; a step needs {settings.batch_rows}."
        )
    return rows


def _key(ws: Workspace, iv: Intervention, settings: RelearnSettings) -> dict:
    return {
        "version": RELEARN_VERSION,
        "workspace": ws.config.provenance_hash(),
        "model": ws.model_fingerprint,
        "sae": ws.sae_fingerprint(),
        "libraries": library_versions(),
        "data": {
            role: data.fingerprint(ws.config, role) for role in (*ROLES.values(), FORGET, SIDE)
        },
        "intervention": iv.record(),
        "settings": asdict(settings),
    }


def result_path(ws: Workspace, iv: Intervention, settings: RelearnSettings) -> Path:
    return ws.folder / "relearn" / f"run-{record_key(_key(ws, iv, settings))}.json"


RESULT_FIELDS = {
    "settings": dict,
    "intervention": dict,
    "steps": list,
    "arms": dict,
    "provenance": dict,
    "clean": dict,
}

SHOWN = (  # what the CLI and the page show of a result beside its tables
    ("settings", "lr"),
    ("settings", "steps"),
    ("settings", "batch_rows"),
    ("settings", "seed"),
    ("provenance", "fine_tuning"),
    ("provenance", "training_text", "forget"),
    ("provenance", "held_out_text", "forget"),
)


def cached(ws: Workspace, iv: Intervention, settings: RelearnSettings) -> dict | None:
    """A kept result of these settings, or None. A result that is damaged, or whose tuned
    weights are no longer beside it, is moved aside (one line says so) and run again."""
    path = result_path(ws, iv, settings)
    return read_memo(
        path, RESULT_FIELDS, check=lambda memo: _problem(memo, path), version=RELEARN_VERSION
    )


def _problem(memo: dict, path: Path) -> str | None:
    """What keeps a kept result from being shown, or None: an arm, a measured step or a
    field the tables (core.relearning.summary) read missing, or an arm's tuned weights gone."""
    if sorted(memo["arms"]) != sorted(ARMS):
        return f"arms {sorted(memo['arms'])}, not {sorted(ARMS)}"
    clean, steps = memo["clean"].get("losses"), memo["steps"]
    if not isinstance(clean, dict) or not all(_numbers(clean.get(n)) for n in ROLES):
        return "no clean losses"
    if not steps or not all(isinstance(step, int) for step in steps):
        return "no measured steps"
    scored = "scores_before" in next(iter(memo["arms"].values()))
    for arm, curve in memo["arms"].items():
        losses = curve.get("losses") if isinstance(curve, dict) else None
        if not isinstance(losses, dict) or not isinstance(curve.get("edit"), bool):
            return f"the {arm} arm is not whole"
        for name in ROLES:
            per_step = losses.get(name)
            if not isinstance(per_step, list) or len(per_step) != len(steps):
                return f"the {arm} arm's {name} losses are not one list per measured step"
            if not all(_numbers(rows, len(clean[name])) for rows in per_step):
                return f"the {arm} arm's {name} losses are not one number per held-out row"
        for key in ("scores_before", "scores_after") if scored else ():
            if not isinstance(curve.get(key), dict) or not all(
                _numbers(curve[key].get(role)) for role in (FORGET, SIDE)
            ):
                return f"the {arm} arm's {key} are not whole"
        weights = curve.get("weights")
        if not isinstance(weights, str) or "/" in weights:
            return f"the {arm} arm names no tuned weights"
        if not (path.parent / weights).is_file():
            return f"the {arm} arm's tuned weights {weights} are missing"
    for keys in SHOWN:
        try:
            functools.reduce(operator.getitem, keys, memo)
        except (KeyError, TypeError):
            return f"no {'.'.join(keys)}"
    return None


def _numbers(values: object, n: int | None = None) -> bool:
    """A list of numbers (of `n` of them, when given)."""
    return (
        isinstance(values, list)
        and (n is None or len(values) == n)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    )


def relearn(
    ws: Workspace, iv: Intervention, settings: RelearnSettings, report: Report | None = None
) -> dict:
    """Fine-tune each arm (ARMS) for `settings.steps` steps and measure held-out forget and
    retain loss (and question scores when asked) along the way; memoised with every input
    and the tuned weights."""
    settings.check(ws.model.cfg.n_ctx)
    iv.check(ws.sae_width())
    path = result_path(ws, iv, settings)
    if (kept := cached(ws, iv, settings)) is not None:
        return kept
    say = report or (lambda stage, fraction: None)
    evaluation = settings.eval_settings()
    held_out = loss_text(ws, evaluation).rows
    protocol = QuestionProtocol(ws, evaluation) if settings.mcq else None
    sae = frozen_copy(ws.sae)
    result: dict = {
        "version": RELEARN_VERSION,
        "settings": asdict(settings) | {"lr": settings.rate},
        "intervention": iv.record(),
        "steps": settings.measured_steps(),
        "arms": {},
        "provenance": _provenance(ws, settings, held_out),
    }
    say("clean model on the held-out rows", 0.0)
    result["clean"] = _measure(ws.model, ws.sae, ws.hook, None, held_out, protocol, ws)
    for number, arm in enumerate(ARMS):
        arm_say = _part(say, number, len(ARMS))
        result["arms"][arm] = _arm(ws, sae, iv, settings, held_out, protocol, arm, arm_say)
        result["arms"][arm]["weights"] = _keep_weights(path, arm, result["arms"][arm].pop("model"))
    write_json(path, result)
    return result


def _part(say: Report, number: int, parts: int) -> Report:
    """Progress of part `number` of `parts` as a share of the whole run."""
    return lambda stage, fraction: say(stage, (number + fraction) / parts)


def _arm(
    ws: Workspace,
    sae,
    iv: Intervention,
    settings: RelearnSettings,
    held_out: dict,
    protocol: QuestionProtocol | None,
    arm: str,
    say: Report,
) -> dict:
    """One arm: its losses at each measured step, its training losses, and its question
    scores before and after when asked; "model" holds the tuned copy."""
    corpus, edited, said = ARMS[arm]
    rows = training_rows(ws, settings, corpus)
    model = tunable_copy(ws.model, settings.kind, settings.rank, settings.seed)
    arm_iv = iv if edited else None
    curve: dict = {"text": said, "corpus": corpus, "edit": edited, "losses": {}}
    wanted, span = set(settings.measured_steps()), max(settings.steps, 1)

    def measure(step: int) -> None:
        say(f"{arm}: held-out loss at step {step}", step / span)
        for name, losses in _measure(model, sae, ws.hook, arm_iv, held_out, None, ws)[
            "losses"
        ].items():
            curve["losses"].setdefault(name, []).append(losses)

    def after_step(step: int, loss: float) -> None:
        say(f"{arm}: fine-tuning step {step} of {settings.steps} (loss {loss:.3f})", step / span)
        if step in wanted:
            measure(step)

    measure(0)
    if protocol is not None:
        curve["scores_before"] = _measure(model, sae, ws.hook, arm_iv, {}, protocol, ws)["scores"]
    curve["train_loss"] = train(
        model,
        sae,
        ws.hook,
        arm_iv,
        rows,
        settings.steps,
        settings.rate,
        settings.batch_rows,
        settings.seed,
        after_step,
    )
    if protocol is not None:
        curve["scores_after"] = _measure(model, sae, ws.hook, arm_iv, {}, protocol, ws)["scores"]
    return curve | {"model": model}


def _measure(model, sae, hook: str, iv, held_out: dict, protocol, ws: Workspace) -> dict:
    """Row losses of each held-out text and, with a protocol, each question set's scores
    (letter probabilities and answers), under `iv` on `model`."""
    found: dict = {"losses": {}, "scores": {}}
    with applied(model, sae, hook, iv):
        for name in ROLES:
            if name in held_out:
                found["losses"][name] = row_losses(model, held_out[name]).tolist()
        if protocol is not None:
            scorer = Scorer(model, ws.tokenizer, ws.config.model.chat_template)
            for role in (FORGET, SIDE):
                questions = protocol.split_questions[role]
                scores = scorer.score(questions)
                found["scores"][role] = scores.correct.astype(int).tolist()
    return found


def _keep_weights(path: Path, arm: str, model) -> str:
    """The arm's tuned weights beside the result (never over the workspace's model)."""
    from safetensors.torch import save

    target = path.with_name(f"{path.stem}-{arm}.safetensors")
    payload = save(trainable_state(model))
    write_atomic(target, lambda handle: handle.write(payload))
    return target.name


def _provenance(ws: Workspace, settings: RelearnSettings, held_out: dict) -> dict:
    evaluation = settings.eval_settings()
    return {
        **ws.provenance(),
        "sae_fingerprint": ws.sae_fingerprint(),
        "fine_tuning": KINDS[settings.kind],
        "training_text": {
            corpus: f"{ws.describe_source(role, portable=True)}: training documents (never "
            f"held out), {settings.rows} rows x {settings.context_length} tokens, BOS first, "
            f"seed {settings.seed + ROWS_STREAM}"
            for corpus, role in ROLES.items()
        },
        "held_out_text": {
            name: f"{ws.describe_source(ROLES[name], portable=True)}: held-out documents, "
            f"{len(held_out[name])} rows x {evaluation.loss_context} tokens, BOS first"
            for name in ROLES
        },
        "questions": "selection split, known filter not applied" if settings.mcq else "not scored",
    }

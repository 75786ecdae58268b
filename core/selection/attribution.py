"""Gradient attribution of SAE features to right answers (METHOD §4, the paper's second mode).

    found = Attributor(evaluator, AttributionConfig(n=10)).attribute(progress)  # cached
    found.top(10)                                                              # to clamp

Per question, the metric is the right letter's logit minus the mean of the wrong letters'
logits at the answer position (a letter's logit: the max over "A" and " A"), on the clean
model. Feature j's attribution is Σ_pos a_j(x_pos) · (d_j · ∂metric/∂x_pos) over the
prompt's positions after BOS, x the residual at the SAE's hook, d_j the feature's decoder
direction: the first-order change of the metric when feature j is scaled, so the features
with the largest attribution carry the answers. The paper then screened candidates one at a
time for MMLU side effects (run `eval` on each) before adding them cumulatively.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.base.records import read_memo, record_key, write_atomic
from core.base.uncertainty import Z95
from core.errors import UserError
from core.evaluation.known import question_set_hash
from core.evaluation.protocol import question_id, refuse_report_split
from core.loading.data import Question
from core.runtime.forward import MAX_BATCH_TOKENS, batches, final_logits, model_lock, pad_right
from core.sae.adapter import adapter_for

if TYPE_CHECKING:
    from transformer_lens.hook_points import HookPoint

    from core.evaluation.evaluator import Evaluator
    from core.evaluation.mcq import Scorer
    from core.workspace.workspace import Workspace

CACHE_VERSION = 2  # 2: the standard error of each mean is kept
TOP_K = 20  # per question: a feature "hits" a question when in its top TOP_K
ARRAYS = ("mean", "se", "hits")


@dataclass(frozen=True)
class AttributionConfig:
    """Gradient attribution to right answers, and how many features it proposes.

    Args:
        role: the question set attributed (a workspace data role).
        question_limit: attribute the first this-many of the evaluator's questions (its
            known ones when its filter has run); None for all of them.
        n: how many features, ranked by mean attribution, the selection keeps.
    """

    role: str = "forget_questions"
    question_limit: int | None = None
    n: int = 20

    def check(self) -> None:
        limit = self.question_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise UserError(f"Questions to attribute must be a whole number ≥ 1, not {limit!r}.")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise UserError(f"n (how many features) must be a whole number ≥ 1, not {self.n!r}.")


def attribution_batch(
    ws: Workspace, scorer: Scorer, questions: Sequence[Question]
) -> Float[np.ndarray, "n d_sae"]:
    """The attribution of every feature to each question's right answer."""
    prompts = [scorer.encode(q) for q in questions]
    tokens, mask = pad_right(prompts, scorer.pad)
    last = torch.tensor([len(p) - 1 for p in prompts])
    answers = torch.tensor([q.answer for q in questions])
    captured = {}

    def grab(x: Float[Tensor, "n pos d_model"], hook: HookPoint) -> Float[Tensor, "n pos d_model"]:
        captured["x"] = x.detach().requires_grad_(True)
        return captured["x"]

    model, device = ws.model, ws.device
    with model_lock(model), torch.enable_grad(), model.hooks(fwd_hooks=[(ws.hook, grab)]):
        resid = model(
            tokens.to(device), stop_at_layer=model.cfg.n_layers, attention_mask=mask.to(device)
        )
        logits = final_logits(model, resid[torch.arange(len(prompts)), last.to(device)])
        letters = logits[:, scorer.letter_ids.to(device)].amax(dim=-1)  # [n, 4]
        right = letters[torch.arange(len(prompts)), answers.to(device)]
        wrong = (letters.sum(dim=-1) - right) / 3
        (grad,) = torch.autograd.grad((right - wrong).sum(), captured["x"])
    with torch.no_grad():
        x = captured["x"].detach()
        keep = mask.to(device).clone()
        keep[:, 0] = 0  # BOS left alone, as the clamp leaves it
        adapter = adapter_for(ws.sae)
        acts = adapter.encode(x) * keep[..., None]
        along = grad @ adapter.decoder_direction().T  # [n, pos, d_sae]: d_j · gradient
        return (acts * along).sum(dim=1).float().cpu().numpy()


@dataclass
class Attribution:
    """Per feature: mean attribution over the questions, its standard error (NaN with
    fewer than 2 questions), and how many questions have it in their top TOP_K; the ids of
    the questions attributed, per role (`protocol.question_id`)."""

    mean: Float[np.ndarray, " d_sae"]
    se: Float[np.ndarray, " d_sae"]
    hits: Int[np.ndarray, " d_sae"]
    questions: int
    provenance: dict
    question_ids: dict[str, list[str]]

    def interval(self, features: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """95% intervals of the features' means (normal, over questions)."""
        mean, half = self.mean[list(features)], Z95 * self.se[list(features)]
        return mean - half, mean + half

    def top(self, n: int) -> list[int]:
        """The n features with the largest positive mean attribution."""
        order = np.argsort(-self.mean, kind="stable")[:n]
        return [int(j) for j in order if self.mean[j] > 0]

    def selection_record(self, config: AttributionConfig) -> dict:
        """What the top n are and where they come from, as saved with a set or written out."""
        top = self.top(config.n)
        return {
            "mode": "gradient attribution (METHOD §4)",
            "config": asdict(config),
            "features": top,
            "mean_attribution": [float(self.mean[j]) for j in top],
            "se_attribution": [float(self.se[j]) for j in top],
            "questions": self.questions,
            "question_ids": self.question_ids,
            "provenance": self.provenance,
        }


class Attributor:
    """Attribution on an evaluator's questions (known ones when its filter has run), cached
    in the workspace's folder keyed by model, SAE, hook and question set."""

    def __init__(self, evaluator: Evaluator, config: AttributionConfig | None = None):
        self.config = config or AttributionConfig()
        self.config.check()
        refuse_report_split(evaluator.settings, "Gradient attribution")
        self.evaluator = evaluator

    @property
    def role(self) -> str:
        return self.config.role

    @cached_property
    def _chosen(self) -> tuple[list[Question], str]:
        questions = self.evaluator.questions(self.role)
        known = self.evaluator.known_indices(self.role)
        settings = self.evaluator.settings
        if known is not None and len(known):
            questions = [questions[i] for i in known]
            which = f"known ({settings.known_variant}), {settings.split} split"
        else:
            state = "has not run" if known is None else "found none"
            which = f"all sampled, {settings.split} split (the known-question filter {state})"
        limit = self.config.question_limit
        return (questions[:limit] if limit else questions), which

    @property
    def questions(self) -> list[Question]:
        return self._chosen[0]

    def record(self) -> dict:
        ws = self.evaluator.ws
        return {
            **self.evaluator.model_record(),
            "sae": ws.sae_fingerprint(),
            "hook": ws.hook,
            "role": self.role,
            "questions": question_set_hash(self.questions),
            "questions_used": f"{len(self.questions)} {self._chosen[1]}",
            "metric": "right letter logit - mean wrong letter logit, BOS left out",
            "version": CACHE_VERSION,
        }

    @property
    def path(self) -> Path:
        return (
            self.evaluator.ws.folder
            / "attribution"
            / f"{self.role}-{record_key(self.record())}.npz"
        )

    def cached(self) -> Attribution | None:
        """The kept attribution; None, without running anything, when there is none or the
        known-question filter it needs has not run yet."""
        settings = self.evaluator.settings
        if settings.known_filter and not self.evaluator.has_known(self.role):
            return None
        fields = dict.fromkeys(ARRAYS, np.ndarray) | {"record": dict}
        kept = read_memo(self.path, fields, self._shape_problem, load=_load_memo)
        return None if kept is None else self._attribution(kept)

    def attribute(
        self,
        progress: Callable[[int, int], None] | None = None,
        known_progress: Callable[[str, float], None] | None = None,
    ) -> Attribution:
        """The attribution (kept on disk); the known-question filter runs first when the
        settings ask for it and it has not run (`known_progress` gets its stage)."""
        self.evaluator.known_indices(self.role, known_progress)
        if (found := self.cached()) is not None:
            return found
        ws, scorer = self.evaluator.ws, self.evaluator.scorer
        lengths = [len(scorer.encode(q)) for q in self.questions]
        total, squares = np.zeros(ws.sae_width()), np.zeros(ws.sae_width())
        hits = np.zeros(ws.sae_width(), dtype=np.int64)
        done = 0
        for group in batches(lengths, MAX_BATCH_TOKENS // 4):  # activations' gradients too
            scores = attribution_batch(ws, scorer, [self.questions[i] for i in group])
            total += scores.sum(axis=0)
            squares += (scores.astype(np.float64) ** 2).sum(axis=0)
            np.add.at(hits, np.argsort(-scores, axis=1)[:, :TOP_K].ravel(), 1)
            done += len(group)
            if progress:
                progress(done, len(self.questions))
        count = max(len(self.questions), 1)
        mean = total / count
        spread = np.maximum(squares - count * mean**2, 0.0) / (count - 1) if count > 1 else np.nan
        se = np.sqrt(spread / count) * np.ones_like(mean)
        arrays = {"mean": mean, "se": se, "hits": hits, "record": json.dumps(self.record())}
        write_atomic(self.path, lambda handle: np.savez(handle, **arrays))
        return self._attribution({"mean": mean, "se": se, "hits": hits, "record": self.record()})

    def _shape_problem(self, kept: dict) -> str | None:
        width = self.evaluator.ws.sae_width()
        wrong = [name for name in ARRAYS if kept[name].shape != (width,)]
        return f"{', '.join(wrong)} not of {width} features" if wrong else None

    def _attribution(self, kept: dict) -> Attribution:
        return Attribution(
            kept["mean"],
            kept["se"],
            kept["hits"],
            len(self.questions),
            kept["record"],
            {self.role: [question_id(q) for q in self.questions]},
        )


def _load_memo(path: Path) -> dict:
    """An attribution memo's arrays, and the record it was computed for."""
    with np.load(path) as stored:
        return {name: stored[name] for name in ARRAYS} | {
            "record": json.loads(str(stored["record"]))
        }

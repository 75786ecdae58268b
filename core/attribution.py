"""Gradient attribution of SAE features to right answers (METHOD §4, the paper's second mode).

    found = Attributor(evaluator).attribute(progress)   # cached on disk
    found.top(10)                                        # features to clamp

Per question, the metric is the right letter's logit minus the mean of the wrong letters'
logits at the answer position (a letter's logit: the max over "A" and " A"), on the clean
model. Feature j's attribution is Σ_pos a_j(x_pos) · (W_dec[j] · ∂metric/∂x_pos) over the
prompt's positions after BOS, x the residual at the SAE's hook: the first-order change of the
metric when feature j is scaled, so the features with the largest attribution carry the
answers. The paper then screened candidates one at a time for MMLU side effects (run
`eval` on each) before adding them cumulatively.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from core.data import Question
from core.known import question_set_hash
from core.mcq import MAX_BATCH_TOKENS, batches, final_logits, pad_right
from core.records import record_key

CACHE_VERSION = 1
TOP_K = 20  # per question: a feature "hits" a question when in its top TOP_K


def attribution_batch(ws, scorer, questions: Sequence[Question]) -> np.ndarray:
    """[n, d_sae] attribution of every feature to each question's right answer."""
    prompts = [scorer.encode(q) for q in questions]
    tokens, mask = pad_right(prompts, scorer.pad)
    last = torch.tensor([len(p) - 1 for p in prompts])
    answers = torch.tensor([q.answer for q in questions])
    captured = {}

    def grab(x, hook):
        captured["x"] = x.detach().requires_grad_(True)
        return captured["x"]

    model, device = ws.model, ws.device
    with torch.enable_grad(), model.hooks(fwd_hooks=[(ws.hook, grab)]):
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
        acts = ws.sae.encode(x) * keep[..., None]
        along = grad @ ws.sae.W_dec.T  # [n, pos, d_sae]: W_dec[j] · gradient
        return (acts * along).sum(dim=1).float().cpu().numpy()


@dataclass
class Attribution:
    """Per feature: mean attribution over the questions and how many questions have it in
    their top TOP_K."""

    mean: np.ndarray  # [d_sae]
    hits: np.ndarray  # [d_sae]
    questions: int
    provenance: dict

    def top(self, n: int) -> list[int]:
        """The n features with the largest positive mean attribution."""
        order = np.argsort(-self.mean, kind="stable")[:n]
        return [int(j) for j in order if self.mean[j] > 0]


class Attributor:
    """Attribution on an evaluator's questions (known ones when its filter has run), cached
    in the workspace's folder keyed by model, SAE, hook and question set."""

    def __init__(self, evaluator, role: str = "forget_questions", limit: int | None = None):
        self.evaluator, self.role, self.limit = evaluator, role, limit

    @cached_property
    def _chosen(self) -> tuple[list[Question], str]:
        questions = self.evaluator.questions(self.role)
        known = self.evaluator.known_indices(self.role)
        settings = self.evaluator.settings
        if known is not None and len(known):
            questions = [questions[i] for i in known]
            which = f"known ({settings.known_variant}, {settings.split})"
        else:
            state = "has not run" if known is None else "found none"
            which = f"all sampled (the known-question filter {state})"
        return (questions[: self.limit] if self.limit else questions), which

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
    def path(self):
        return (
            self.evaluator.ws.folder
            / "attribution"
            / f"{self.role}-{record_key(self.record())}.npz"
        )

    def cached(self) -> Attribution | None:
        return self._read() if self.path.exists() else None

    def attribute(self, progress: Callable[[int, int], None] | None = None) -> Attribution:
        if (found := self.cached()) is not None:
            return found
        ws, scorer = self.evaluator.ws, self.evaluator.scorer
        lengths = [len(scorer.encode(q)) for q in self.questions]
        total = np.zeros(ws.sae_width())
        hits = np.zeros(ws.sae_width(), dtype=np.int64)
        done = 0
        for group in batches(lengths, MAX_BATCH_TOKENS // 4):  # activations' gradients too
            scores = attribution_batch(ws, scorer, [self.questions[i] for i in group])
            total += scores.sum(axis=0)
            np.add.at(hits, np.argsort(-scores, axis=1)[:, :TOP_K].ravel(), 1)
            done += len(group)
            if progress:
                progress(done, len(self.questions))
        count = max(len(self.questions), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial.npz")
        np.savez(partial, mean=total / count, hits=hits, record=json.dumps(self.record()))
        partial.replace(self.path)
        return self._read()

    def _read(self) -> Attribution:
        with np.load(self.path) as stored:
            record = json.loads(str(stored["record"]))
            return Attribution(stored["mean"], stored["hits"], len(self.questions), record)

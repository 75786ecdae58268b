"""Greedy text generation, clean or under an intervention, for side-by-side comparison."""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.interventions.edits import Intervention, applied
from core.runtime.forward import final_logits, final_resid, sequence_context
from core.workspace.workspace import Workspace

MAX_NEW_TOKENS = 64


@torch.no_grad()
def generate(
    ws: Workspace,
    prompt: str,
    iv: Intervention | None,
    max_new_tokens: int = 24,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """The greedy continuation of `prompt`. Every step reruns the whole sequence (no KV
    cache), so an intervention sees every position exactly as in scoring (BOS at 0).
    `progress` gets (tokens made, tokens asked)."""
    tokenizer, model = ws.tokenizer, ws.model
    ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
    start = len(ids)
    with applied(model, ws.sae, ws.hook, iv), sequence_context(span=start):  # gate: the prompt
        steps = min(max_new_tokens, MAX_NEW_TOKENS)
        for step in range(steps):
            if progress is not None:
                progress(step, steps)
            resid = final_resid(model, torch.tensor([ids]))
            token = int(final_logits(model, resid[0, -1:]).argmax())
            if token == tokenizer.eos_token_id:
                break
            ids.append(token)
    return tokenizer.decode(ids[start:])

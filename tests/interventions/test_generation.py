"""Greedy generation, clean and under an intervention, against a plain greedy loop."""

import pytest
import torch

from core.interventions.edits import applied, make_intervention
from core.interventions.generation import generate

pytestmark = pytest.mark.model

PROMPT = "The mitochondria is the"


@torch.no_grad()
def _greedy(ws, tokens: int) -> str:
    ids = [ws.tokenizer.bos_token_id, *ws.tokenizer.encode(PROMPT, add_special_tokens=False)]
    start = len(ids)
    for _ in range(tokens):
        token = int(ws.model(torch.tensor([ids]))[0, -1].argmax())
        if token == ws.tokenizer.eos_token_id:
            break
        ids.append(token)
    return ws.tokenizer.decode(ids[start:])


def test_clean_and_intervened_generation_equal_a_plain_greedy_loop(offline_ws):
    assert generate(offline_ws, PROMPT, None, 6) == _greedy(offline_ws, 6)
    iv = make_intervention(offline_ws, [372, 183, 1598], [20.0] * 3)
    with applied(offline_ws.model, offline_ws.sae, offline_ws.hook, iv):
        expected = _greedy(offline_ws, 6)
    assert generate(offline_ws, PROMPT, iv, 6) == expected

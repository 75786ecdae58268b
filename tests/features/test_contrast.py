"""Contrast search on crafted texts whose answer is known: counts equal to a dense encode of
the same tokens, identical groups contrast to nothing, swapped groups swap the signs."""

import numpy as np
import pytest
import torch

from core.errors import UserError
from core.features.contrast import ContrastConfig, contrast, split_texts

pytestmark = pytest.mark.model

BIOLOGY = [
    "The mitochondria produce ATP through oxidative phosphorylation in the inner membrane.",
    "Ribosomes translate messenger RNA into a chain of amino acids.",
    "During mitosis the chromosomes condense and the nuclear envelope breaks down.",
]
OTHER = [
    "The match ended in a draw after the striker missed a late penalty.",
    "Shares of the bank fell sharply after the quarterly earnings report.",
]


@torch.no_grad()
def dense_counts(ws, texts: list[str]) -> np.ndarray:
    counts = np.zeros(ws.sae.cfg.d_sae, dtype=np.int64)
    for text in texts:
        ids = [
            ws.tokenizer.bos_token_id,
            *ws.tokenizer(text, add_special_tokens=False)["input_ids"],
        ]
        acts = ws.sae.encode(ws.residual(torch.tensor([ids])))[0, 1:]
        counts += (acts > 0).sum(0).numpy()
    return counts


def test_counts_match_a_dense_encode_and_rank_by_difference(offline_ws):
    found, record = contrast(offline_ws, BIOLOGY, OTHER, ContrastConfig(batch_size=2))
    a, b = dense_counts(offline_ws, BIOLOGY), dense_counts(offline_ws, OTHER)
    rows = found.set_index("feature")
    assert set(rows.index) == set(np.flatnonzero(a + b).tolist())
    assert (rows["count_a"].to_numpy() == a[rows.index]).all()
    assert (rows["count_b"].to_numpy() == b[rows.index]).all()
    tokens_a, tokens_b = record["group_a"]["tokens"], record["group_b"]["tokens"]
    difference = a / tokens_a - b / tokens_b
    assert found["feature"].iloc[0] == int(np.argmax(difference))
    assert (np.diff(found["difference"].to_numpy()) <= 1e-12).all()
    assert record["group_a"]["texts"] == 3 and record["sae"] == offline_ws.sae_fingerprint()


def test_identical_groups_differ_nowhere_and_swapping_flips_the_sign(offline_ws):
    same, _ = contrast(offline_ws, BIOLOGY, BIOLOGY)
    assert (same["difference"] == 0).all() and np.allclose(same["ratio"], 1.0)
    forward, _ = contrast(offline_ws, BIOLOGY[:1], OTHER[:1])
    backward, _ = contrast(offline_ws, OTHER[:1], BIOLOGY[:1])
    merged = (
        forward.set_index("feature")["difference"] + backward.set_index("feature")["difference"]
    )
    assert np.allclose(merged, 0.0)


def test_bad_groups_are_user_errors(offline_ws):
    with pytest.raises(UserError, match="Group B has no text"):
        contrast(offline_ws, BIOLOGY, ["  "])
    with pytest.raises(UserError, match="order"):
        contrast(offline_ws, BIOLOGY, OTHER, ContrastConfig(order="best"))


def test_split_texts_reads_paragraphs():
    assert split_texts("one\nline\n\n\n two \r\n\r\nthree") == ["one\nline", "two", "three"]

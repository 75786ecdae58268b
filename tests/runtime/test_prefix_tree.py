"""Token trees (tree attention) against plain runs of each sequence, on the real model."""

import pytest
import torch

from core.runtime.forward import final_resid
from core.runtime.prefix_tree import TreeRows, TreeUnavailable, tree_resid

pytestmark = pytest.mark.model

SEQUENCES = [
    [2, 818, 5279, 563, 496, 10329],
    [2, 818, 5279, 563, 1070],
    [2, 818, 5279],  # a prefix of the two above
    [2, 818, 1401, 2063, 563, 496, 10329, 236761],
    [2, 9259, 563],
    [2, 818, 5279, 563, 496, 10329],  # a repeat
    [2, 818],  # all in a stem when rows are short
]


@pytest.mark.parametrize("row_limit", [8, 512])
def test_rows_hold_every_sequence_with_ancestors_first(row_limit):
    layout = TreeRows.build(SEQUENCES, row_limit)
    stems = [layout.stems[s] for s in layout.stem_of]
    assert all(len(s) + len(t) <= row_limit for s, t in zip(stems, layout.tokens, strict=True))
    for sequence, (row, in_stem, path) in zip(SEQUENCES, layout.paths, strict=True):
        assert stems[row][:in_stem] + [layout.tokens[row][i] for i in path] == sequence
        assert [layout.parents[row][i] for i in path] == [-1, *path[:-1]][: len(path)]
    for parents in layout.parents:
        assert all(p < i for i, p in enumerate(parents))
    distinct = len({tuple(s[: i + 1]) for s in SEQUENCES for i in range(len(s))})
    run = sum(map(len, layout.stems)) + sum(map(len, layout.tokens))
    assert run >= distinct
    if row_limit == 512:
        assert run == distinct  # one row, each token once


def test_a_sequence_longer_than_a_row_is_refused():
    with pytest.raises(TreeUnavailable):
        TreeRows.build(SEQUENCES, 7)


@torch.no_grad()
@pytest.mark.parametrize("row_limit", [8, 512])
def test_tree_residuals_equal_plain_runs(offline_ws, row_limit):
    model = offline_ws.model
    resid = tree_resid(model, SEQUENCES, pad=0, row_limit=row_limit, max_tokens=24)
    for sequence, row in zip(SEQUENCES, resid, strict=True):
        plain = final_resid(model, torch.tensor([sequence]))[0]
        scale = plain.abs().amax(dim=-1, keepdim=True)
        assert torch.allclose(row[: len(sequence)] / scale, plain / scale, atol=1e-4)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())

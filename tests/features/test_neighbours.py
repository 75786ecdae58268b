"""Decoder and encoder neighbours: the chunked top-k against a dense cosine matrix, and the
per-SAE cache on the shipped SAE."""

import numpy as np
import pytest
import torch

from core.features.neighbours import NeighbourConfig, Neighbours, top_cosine


@pytest.mark.parametrize("chunk", [7, 64, 1000], ids=["ragged", "even", "one-chunk"])
def test_top_cosine_matches_a_dense_cosine_matrix(chunk):
    directions = torch.randn(200, 12, generator=torch.Generator().manual_seed(0))
    index, cosine = top_cosine(directions, k=5, chunk=chunk)
    unit = directions / directions.norm(dim=-1, keepdim=True)
    dense = (unit @ unit.T).numpy()
    np.fill_diagonal(dense, -np.inf)
    expected = np.argsort(-dense, axis=1)[:, :5]
    assert (index == expected).all()
    np.testing.assert_allclose(cosine, np.take_along_axis(dense, expected, 1), atol=1e-5)


@pytest.mark.model
def test_workspace_neighbours_are_cached_and_match_the_decoder(offline_ws):
    config = NeighbourConfig(k=8)
    found = Neighbours.for_workspace(offline_ws, config)
    again = Neighbours.for_workspace(offline_ws, config)
    assert again.folder == found.folder and (found.folder / "provenance.json").exists()
    ids, cosines = found.of(100, "decoder", 8)
    w_dec = offline_ws.sae.W_dec.detach().float()
    unit = w_dec / w_dec.norm(dim=-1, keepdim=True)
    dense = (unit @ unit[100]).numpy()
    dense[100] = -np.inf
    assert ids == np.argsort(-dense)[:8].tolist()
    np.testing.assert_allclose(cosines, dense[ids], atol=1e-4)
    enc_ids, _ = found.of(100, "encoder", 8)
    assert 100 not in enc_ids and len(enc_ids) == 8

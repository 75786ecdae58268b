"""The SAE adapter of each architecture family, on tiny seeded SAEs built with sae-lens: the
selected latents, the sparse form and the decoder directions agree with sae-lens's own
encode and decode; and no module of core/ but the adapter dispatches on the architecture."""

import re
from pathlib import Path

import pytest
import torch
from sae_lens import (
    SAE,
    AbsTopKSAE,
    AbsTopKSAEConfig,
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)

from core.sae.adapter import (
    AbsTopKAdapter,
    JumpReLUAdapter,
    SAEAdapter,
    StandardAdapter,
    TopKAdapter,
    adapter_for,
    fold_decoder_norms,
)

D_IN, D_SAE = 16, 64
PICKED = [3, 10, 42, 63]
CORE = Path(__file__).resolve().parents[2] / "core"


def _seeded(sae):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()
    return sae


def _batchtopk(tmp_path):
    """A BatchTopK SAE as sae-lens saves it for inference: a JumpReLU SAE."""
    sae = _seeded(BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=8)))
    sae.topk_threshold = torch.tensor(0.2, dtype=torch.double)
    sae.save_inference_model(tmp_path / "batchtopk")
    return SAE.load_from_disk(tmp_path / "batchtopk")


BUILDERS = {
    "standard": lambda _: _seeded(StandardSAE(StandardSAEConfig(D_IN, D_SAE))),
    "jumprelu": lambda _: _seeded(JumpReLUSAE(JumpReLUSAEConfig(D_IN, D_SAE))),
    "topk": lambda _: _seeded(TopKSAE(TopKSAEConfig(D_IN, D_SAE, k=8))),
    "topk-rescaled": lambda _: _seeded(
        TopKSAE(TopKSAEConfig(D_IN, D_SAE, k=8, rescale_acts_by_decoder_norm=True))
    ),
    "abstopk": lambda _: _seeded(AbsTopKSAE(AbsTopKSAEConfig(D_IN, D_SAE, k=8))),
    "batchtopk": _batchtopk,
    "standard-layer-norm": lambda _: _seeded(
        StandardSAE(StandardSAEConfig(D_IN, D_SAE, normalize_activations="layer_norm"))
    ),
    "gated": lambda _: _seeded(GatedSAE(GatedSAEConfig(D_IN, D_SAE))),
}
FAMILIES = {
    "standard": StandardAdapter,
    "jumprelu": JumpReLUAdapter,
    "topk": TopKAdapter,
    "topk-rescaled": TopKAdapter,
    "abstopk": AbsTopKAdapter,
    "batchtopk": JumpReLUAdapter,
    "standard-layer-norm": StandardAdapter,
    "gated": SAEAdapter,
}


@pytest.fixture(params=list(BUILDERS))
def built(request, tmp_path):
    torch.manual_seed(0)
    return request.param, BUILDERS[request.param](tmp_path), torch.randn(2, 5, D_IN)


def test_each_architecture_gets_its_family(built):
    name, sae, _ = built
    assert type(adapter_for(sae)) is FAMILIES[name]


@torch.no_grad()
def test_selected_activations_are_the_full_encodes_columns(built):
    _, sae, x = built
    adapter = adapter_for(sae)
    full = sae.encode(x)
    assert (full[..., PICKED] != 0).any()
    torch.testing.assert_close(adapter.selected_activations(x, PICKED), full[..., PICKED])
    torch.testing.assert_close(adapter.encode(x), full, rtol=0, atol=0)


@torch.no_grad()
def test_sparse_encode_is_the_dense_encode(built):
    _, sae, x = built
    flat = x.reshape(-1, D_IN)
    counts, features, values = adapter_for(sae).sparse_encode(flat)
    dense = torch.zeros(flat.shape[0], D_SAE)
    rows = torch.repeat_interleave(torch.arange(flat.shape[0]), torch.as_tensor(counts))
    dense[rows, torch.as_tensor(features).long()] = torch.as_tensor(values)
    assert counts.sum() == len(features) == len(values) > 0
    torch.testing.assert_close(dense, sae.encode(flat))


@torch.no_grad()
def test_decoder_directions_are_what_one_unit_of_a_feature_decodes_to(built):
    name, sae, x = built
    adapter = adapter_for(sae)
    acts = sae.encode(x)
    change = torch.zeros_like(acts)
    change[..., PICKED] = torch.randn(*acts.shape[:-1], len(PICKED))
    if adapter.linear_decoder:
        moved = sae.decode(acts + change) - sae.decode(acts)
        along = change[..., PICKED] @ adapter.decoder_direction(PICKED)
        torch.testing.assert_close(along, moved, rtol=1e-4, atol=1e-5)
    else:
        assert name == "standard-layer-norm"  # the clamp decodes twice instead
    rows = adapter.decoder_direction(PICKED)
    if name == "topk-rescaled":
        torch.testing.assert_close(rows.norm(dim=-1), torch.ones(len(PICKED)))
        assert not torch.allclose(rows, sae.W_dec[PICKED])
    else:
        assert torch.equal(rows, sae.W_dec[PICKED])
    assert torch.equal(adapter.decoder_direction()[PICKED], rows)


@torch.no_grad()
def test_folding_decoder_norms_keeps_the_sae_function():
    sae = BUILDERS["topk-rescaled"](None)
    x = torch.randn(7, D_IN)
    before, recon = sae.encode(x), sae(x)
    directions = adapter_for(sae).decoder_direction()
    fold_decoder_norms(sae)
    after = adapter_for(sae)
    torch.testing.assert_close(after.decoder_direction(), directions)
    torch.testing.assert_close(after.encode(x), before)
    torch.testing.assert_close(sae(x), recon)


# "topk" alone is left out: our trainer's config and the authors' checkpoints name it too.
DISPATCH = re.compile(
    r"__name__\s*[!=]=\s*[\"']\w*SAE|isinstance\([^)]*SAE\b|\.architecture\(\)"
    r"|[\"'](standard|jumprelu|abstopk|batchtopk)[\"']\s*(==|!=|in\b)"
    r"|(==|!=|\bin)\s*[\"'](standard|jumprelu|abstopk|batchtopk)[\"']"
    r"|PARTIAL_ENCODE|rescale_acts_by_decoder_norm|\.threshold\[|sae\.cfg\.k\b|process_sae_in"
    r"|\bsae\.(encode|decode)\(|sae\.W_dec"
)


def test_only_the_adapter_dispatches_on_the_architecture():
    for before in (  # what core/sae/encoding.py dispatched with
        'if type(sae).__name__ == "TopKSAE" and not sae.cfg.rescale_acts_by_decoder_norm:',
        "architecture = sae.cfg.architecture()",
        'if architecture == "jumprelu":',
        "hidden = sae_in @ sae.W_enc[:, index] + sae.b_enc[index]; sae.threshold[index]",
    ):
        assert DISPATCH.search(before), before
    found = [
        f"{path.relative_to(CORE)}:{number}: {line.strip()}"
        for path in sorted(CORE.rglob("*.py"))
        if path != CORE / "sae" / "adapter.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if DISPATCH.search(line)
    ]
    assert not found, "architecture dispatch outside core/sae/adapter.py:\n" + "\n".join(found)

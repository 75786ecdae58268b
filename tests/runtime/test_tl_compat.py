"""The TransformerLens door (core/runtime/tl_compat.py) against plain TransformerLens, on tiny
randomly initialised models: a plain rotary one, one with absolute positions, and a
Gemma-2-style one (attention and logit softcaps, local layers with a window shorter than
the sequences, grouped keys, norms before and after), the branches the real Gemma-3 never
takes. If the pinned transformer-lens version changes, this file says what broke.
"""

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from core.runtime import tl_compat
from core.runtime.forward import final_logits, final_resid
from core.runtime.prefix_tree import TreeUnavailable, tree_resid
from core.runtime.shared_prefix import prefix_kv, resid_after

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 6
SEQUENCES = [
    [1, 7, 3, 9, 4, 2],
    [1, 7, 3, 9, 5],
    [1, 7, 3],  # a prefix of the two above
    [1, 7, 8, 2, 6, 4],
    [1, 11, 3],
    [1, 7, 3, 9, 4, 2],  # a repeat
    [1, 7],
]
PREFIX = [1, 7, 3, 9, 4, 2, 8, 5]  # longer than the window, as a k-shot block is
RESTS = [[6, 2, 9, 3, 1], [4], [10, 12, 5, 7, 3, 8, 2]]
GEMMA2_FIELDS = (  # taken from TransformerLens's own Gemma-2 config
    "positional_embedding_type",
    "rotary_base",
    "normalization_type",
    "final_rms",
    "use_normalization_before_and_after",
    "gated_mlp",
    "act_fn",
    "use_attn_scale",
    "use_local_attn",
)
TINY = dict(d_model=64, d_head=16, n_heads=4, d_mlp=128, n_layers=4, n_ctx=64, d_vocab=50)


def _model(seed: int = 0, **cfg) -> HookedTransformer:
    torch.manual_seed(seed)
    model = HookedTransformer(HookedTransformerConfig(**(TINY | cfg)))
    return model.eval()


def _gemma2_config(attn_cap: float, logit_cap: float) -> dict:
    pretrained = tl_compat.pretrained_config("google/gemma-2-2b")
    return {field: getattr(pretrained, field) for field in GEMMA2_FIELDS} | dict(
        n_key_value_heads=2,
        window_size=WINDOW,
        attn_types=["local", "global"] * (TINY["n_layers"] // 2),
        attn_scores_soft_cap=attn_cap,
        output_logits_soft_cap=logit_cap,
        initializer_range=0.5,  # scores and logits well past the caps below
    )


@pytest.fixture(scope="module")
def gemma2() -> HookedTransformer:
    return _model(**_gemma2_config(attn_cap=5.0, logit_cap=2.0))


@pytest.fixture(scope="module")
def plain() -> HookedTransformer:
    return _model(positional_embedding_type="rotary", normalization_type="LN", act_fn="gelu")


@pytest.fixture(params=["plain", "gemma2"])
def model(request) -> HookedTransformer:
    return request.getfixturevalue(request.param)


def _close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-5) -> bool:
    scale = theirs.abs().amax(dim=-1, keepdim=True)
    return torch.allclose(ours / scale, theirs / scale, atol=atol)


def test_the_installed_transformer_lens_is_the_pinned_one():
    """A bump must come with a green run of this file (tl_compat is what to check)."""
    pins = re.findall(r"^transformer-lens==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [importlib.metadata.version("transformer-lens")]


def test_the_tiny_gemma2_takes_the_gemma2_branches(gemma2):
    cfg = gemma2.cfg
    assert cfg.attn_types[0] == "local" and gemma2.blocks[0].attn.attn_type == "local"
    assert cfg.window_size < min(len(PREFIX) + len(r) for r in RESTS)
    assert cfg.n_key_value_heads < cfg.n_heads
    uncapped = _model(**_gemma2_config(attn_cap=-1.0, logit_cap=-1.0))
    tokens = torch.tensor([SEQUENCES[0]])
    with torch.no_grad():
        logits = gemma2(tokens)
        assert logits.abs().max() <= cfg.output_logits_soft_cap
        raw = uncapped.ln_final(final_resid(uncapped, tokens)) @ uncapped.W_U
        assert raw.abs().max() > 2 * cfg.output_logits_soft_cap  # the logit cap bites
        _, cache = uncapped.run_with_cache(tokens, names_filter="blocks.0.attn.hook_attn_scores")
        scores = cache["blocks.0.attn.hook_attn_scores"]
        assert scores[scores.isfinite()].abs().max() > 2 * cfg.attn_scores_soft_cap  # so does this


@torch.no_grad()
def test_final_logits_are_the_model_forward_logits(model):
    tokens = torch.tensor(SEQUENCES[:1] + SEQUENCES[5:6])
    ours = final_logits(model, final_resid(model, tokens))
    assert ours.dtype == torch.float32
    assert _close(ours, model(tokens))


@torch.no_grad()
def test_unembed_direction_is_the_unembedding_through_the_rms_norm(gemma2):
    direction = torch.randn(gemma2.cfg.d_model)
    rms = (direction.pow(2).mean() + gemma2.cfg.eps).sqrt()
    theirs = gemma2.unembed(gemma2.ln_final(direction[None, None]))[0, 0] - gemma2.b_U
    assert _close(tl_compat.unembed_direction(gemma2, direction) / rms, theirs)


@torch.no_grad()
def test_a_cache_holds_the_unrotated_keys_and_values(model):
    tokens = torch.tensor(SEQUENCES[:1] + SEQUENCES[5:6])
    cache = tl_compat.new_cache(model, 2)
    assert tl_compat.cache_length(cache) == 0
    final_resid(model, tokens, torch.ones_like(tokens), cache)
    assert tl_compat.cache_length(cache) == tokens.shape[1]
    _, seen = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(("_k", "_v")))
    kv = tl_compat.cache_kv(cache)
    assert len(kv) == model.cfg.n_layers
    for layer, (keys, values) in enumerate(kv):
        assert torch.equal(keys, seen[f"blocks.{layer}.attn.hook_k"])
        assert torch.equal(values, seen[f"blocks.{layer}.attn.hook_v"])
    zeros = tl_compat.zero_kv(model, 3, 5)
    for (keys, values), (cached, _) in zip(zeros, kv, strict=True):
        assert keys.shape == values.shape == (3, 5, *cached.shape[2:])
        assert keys.dtype == cached.dtype and keys.device == cached.device
        assert not keys.any() and not values.any()
    rebuilt = tl_compat.cache_from(model, kv)
    assert tl_compat.cache_length(rebuilt) == tokens.shape[1]
    for (keys, values), (cached_keys, cached_values) in zip(
        tl_compat.cache_kv(rebuilt), kv, strict=True
    ):
        assert keys is cached_keys and values is cached_values


@torch.no_grad()
def test_a_shared_prefix_past_the_window_scores_as_whole_sequences(model):
    kv = prefix_kv(model, PREFIX)
    resid = resid_after(model, kv, RESTS, pad=0)
    for rest, row in zip(RESTS, resid, strict=True):
        whole = final_resid(model, torch.tensor([PREFIX + rest]))[0, len(PREFIX) :]
        assert _close(row[: len(rest)], whole)


@torch.no_grad()
@pytest.mark.parametrize("row_limit", [6, 512])
def test_token_trees_equal_whole_sequences(model, row_limit):
    resid = tree_resid(model, SEQUENCES, pad=0, row_limit=row_limit, max_tokens=16)
    for sequence, row in zip(SEQUENCES, resid, strict=True):
        whole = final_resid(model, torch.tensor([sequence]))[0]
        assert _close(row[: len(sequence)], whole)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())


def test_the_door_reads_positions_and_windows(plain, gemma2):
    absolute = _model(positional_embedding_type="standard", normalization_type="LN")
    assert tl_compat.movable_positions(plain) and tl_compat.movable_positions(gemma2)
    assert not tl_compat.movable_positions(absolute)
    assert tl_compat.attention_window(plain) is None
    assert tl_compat.attention_window(gemma2) == WINDOW
    with pytest.raises(TreeUnavailable):
        tree_resid(absolute, SEQUENCES, pad=0)
    with pytest.raises(TreeUnavailable):  # a local layer would lose keys the row still holds
        tree_resid(gemma2, [[*s, 3, 3] for s in SEQUENCES], pad=0)


@torch.no_grad()
def test_tree_hooks_hide_and_move_tokens(model):
    """A token in front that nobody sees, and the others moved back one position, leave the
    others' residuals those of a plain run without it."""
    tokens = torch.tensor([SEQUENCES[3]])
    width = tokens.shape[1] + 1
    mask = torch.ones(1, width, width, dtype=torch.bool).tril()
    mask[0, 1:, 0] = False  # the front token: seen by itself only
    shift = torch.ones(1, width, dtype=torch.long)
    shift[0, 0] = 0
    front = torch.cat([torch.tensor([[5]]), tokens], 1)
    with model.hooks(fwd_hooks=tl_compat.tree_hooks(model, mask, shift)):
        moved = final_resid(model, front)[0, 1:]
    assert _close(moved, final_resid(model, tokens)[0])


def _tl_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, 'module:name', under TYPE_CHECKING) per name a file imports from
    transformer_lens."""
    found = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            guarded = typing_only or (
                isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING"
            )
            if isinstance(child, ast.Import):
                found.extend(
                    (child.lineno, alias.name, guarded)
                    for alias in child.names
                    if alias.name.split(".")[0] == "transformer_lens"
                )
            elif (
                isinstance(child, ast.ImportFrom)
                and (child.module or "").split(".")[0] == "transformer_lens"
            ):
                found.extend(
                    (child.lineno, f"{child.module}:{a.name}", guarded) for a in child.names
                )
            visit(child, guarded)

    visit(ast.parse(path.read_text()), False)
    return found


# Outside the door, transformer_lens is imported only for these types, in annotations.
TYPE_ONLY = {
    "transformer_lens.hook_points:HookPoint",
    "transformer_lens:HookedTransformer",
    "transformer_lens.HookedTransformer:HookedTransformer",
}
DOOR = {"core/runtime/tl_compat.py", "core/loading/models.py"}  # models.py: loading only


def test_only_the_door_imports_transformer_lens():
    stray = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "core").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in DOOR
        for line, name, typing_only in _tl_imports(path)
        if not (typing_only and name in TYPE_ONLY)
    ]
    assert not stray, "go through core.runtime.tl_compat:\n" + "\n".join(stray)


# Attributes of TransformerLens's modules, caches and configs that only its internals use.
INTERNAL_ATTRIBUTES = {
    "ln_final",
    "W_U",
    "b_U",
    "unembed",
    "blocks",
    "attn",
    "attn_type",
    "attn_types",
    "rotary_cos",
    "rotary_sin",
    "rotary_dim",
    "rotate_every_two",
    "IGNORE",
    "entries",
    "past_keys",
    "past_values",
    "previous_attention_mask",
    "positional_embedding_type",
    "use_local_attn",
    "window_size",
    "attn_scores_soft_cap",
    "output_logits_soft_cap",
}


def test_only_the_door_reaches_into_transformer_lens_internals():
    stray = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path in sorted((ROOT / "core").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in DOOR
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRIBUTES
    ]
    assert not stray, "go through core.runtime.tl_compat:\n" + "\n".join(stray)

"""The authors' `.pt` SAE checkpoints converted to sae-lens folders: a synthetic checkpoint
written the way their `SparseAutoencoder.save_model` writes one (their Config dataclass
pickled under `sae.config.Config`, `b_pre` registered as the same parameter as `b_dec`),
then encoded and decoded by sae-lens exactly as their forward pass does."""

import dataclasses
import re
import sys
import types

import pytest
import torch
from torch import nn

from core.cli import main
from core.errors import UserError
from core.sae.convert import convert_authors_sae

D_IN, D_SAE = 16, 64


def _authors_module(monkeypatch) -> type:
    """Their `sae.config.Config` (the fields the converter reads, their defaults)."""

    @dataclasses.dataclass
    class Config:
        model_name: str = "gemma-2b-it"
        hook_point: str = "blocks.9.hook_resid_pre"
        d_in: int = D_IN
        different_output: bool = False
        context_size: int = 1024
        expansion_factor: int = D_SAE // D_IN
        subtract_b_dec_from_inputs: bool = True
        use_gated_sparse_autoencoder: bool = False
        activation_function: str = "relu"
        topk_amount: int = 10
        device: str = "cuda"
        dtype: torch.dtype = torch.float32

    Config.__module__, Config.__qualname__ = "sae.config", "Config"
    package, module = types.ModuleType("sae"), types.ModuleType("sae.config")
    module.Config = Config
    package.config = module
    monkeypatch.setitem(sys.modules, "sae", package)
    monkeypatch.setitem(sys.modules, "sae.config", module)
    return Config


class AuthorsSAE(nn.Module):
    """Their SparseAutoencoder's parameters and forward pass (relu / topk)."""

    def __init__(self, cfg, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.randn(D_IN, D_SAE, generator=generator))
        self.b_enc = nn.Parameter(torch.randn(D_SAE, generator=generator) * 0.1)
        self.W_dec = nn.Parameter(torch.randn(D_SAE, D_IN, generator=generator))
        self.b_dec = nn.Parameter(torch.randn(D_IN, generator=generator))
        self.b_pre = self.b_dec  # registered under both names, as in their code

    def forward(self, x):
        if self.cfg.subtract_b_dec_from_inputs:
            x = x - self.b_pre
        pre = x @ self.W_enc + self.b_enc
        if self.cfg.activation_function == "topk":
            top = pre.topk(self.cfg.topk_amount, dim=-1)
            acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        else:
            acts = pre.relu()
        return acts, acts @ self.W_dec + self.b_dec


def _save(tmp_path, module: AuthorsSAE) -> object:
    path = tmp_path / "sparse_autoencoder_gemma-2b-it_blocks.9.hook_resid_pre_s64.pt"
    torch.save({"cfg": module.cfg, "state_dict": module.state_dict()}, path)
    return path


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"activation_function": "topk"},
        {"subtract_b_dec_from_inputs": False},
        {"separate_b_pre": True},
    ],
    ids=["relu", "topk", "no-input-bias", "separate-b_pre"],
)
@torch.no_grad()
def test_converted_sae_encodes_and_decodes_as_the_authors(tmp_path, monkeypatch, options):
    from sae_lens import SAE

    config_class = _authors_module(monkeypatch)
    separate = options.pop("separate_b_pre", False)
    authors = AuthorsSAE(config_class(**options))
    if separate:
        authors.b_pre = nn.Parameter(torch.randn(D_IN))
    path = _save(tmp_path, authors)
    monkeypatch.delitem(sys.modules, "sae.config")  # the converter never needs their code
    out = convert_authors_sae(path, tmp_path / "converted")
    sae = SAE.load_from_disk(out)
    x = torch.randn(32, D_IN)
    acts, recon = authors(x)
    assert sae.cfg.metadata.hook_name == "blocks.9.hook_resid_pre"
    topk = options.get("activation_function") == "topk"
    assert sae.cfg.architecture() == ("topk" if topk else "standard")
    torch.testing.assert_close(sae.encode(x), acts, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sae.decode(sae.encode(x)), recon, atol=1e-4, rtol=1e-4)


def test_the_cli_converts_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    config_class = _authors_module(monkeypatch)
    path = _save(tmp_path, AuthorsSAE(config_class()))
    assert main(["convert-sae", str(path), "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "cfg.json").exists()
    assert main(["convert-sae", str(path), "--out", str(tmp_path / "ok")]) == 2
    assert "not empty" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["convert-sae", str(garbage), "--out", str(tmp_path / "bad")]) == 2
    assert "not an authors' SAE checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_gated_checkpoints_are_refused(tmp_path, monkeypatch):
    config_class = _authors_module(monkeypatch)
    authors = AuthorsSAE(config_class(use_gated_sparse_autoencoder=True))
    authors.r_mag = nn.Parameter(torch.zeros(D_SAE))
    with pytest.raises(UserError, match="gated"):
        convert_authors_sae(_save(tmp_path, authors), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _broken(module: AuthorsSAE, case: str) -> dict:
    """The checkpoint torch.save would write for `module`, broken as `case` says."""
    state = module.state_dict()
    if case == "lists":
        state = {key: value.tolist() for key, value in state.items()}
    elif case == "1-D W_enc":
        state["W_enc"] = state["W_enc"].flatten()
    return {"cfg": module.cfg, "state_dict": state}


@pytest.mark.parametrize(
    ("case", "options", "message"),
    [
        ("lists", {}, "are not tensors"),
        ("1-D W_enc", {}, r"W_enc has shape \(1024,\)"),
        ("topk ten", {"activation_function": "topk", "topk_amount": "ten"}, "'ten'"),
        ("topk 0", {"activation_function": "topk", "topk_amount": 0}, "from 1 to 64"),
    ],
    ids=["lists", "1-D-W_enc", "topk-ten", "topk-0"],
)
def test_a_malformed_checkpoint_is_one_line(tmp_path, monkeypatch, capsys, case, options, message):
    config_class = _authors_module(monkeypatch)
    path = tmp_path / "broken.pt"
    torch.save(_broken(AuthorsSAE(config_class(**options)), case), path)
    assert main(["convert-sae", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err)
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_one_line_and_the_file_is_kept(tmp_path, monkeypatch, capsys):
    config_class = _authors_module(monkeypatch)
    path = _save(tmp_path, AuthorsSAE(config_class()))
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["convert-sae", str(path), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and err.count("\n") == 1
    assert taken.read_text() == "mine"


def test_a_malicious_pickle_does_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    marker = tmp_path / "ran"
    torch.save({"cfg": _Evil(str(marker)), "state_dict": {}}, path)
    assert main(["convert-sae", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "not an authors' SAE checkpoint" in capsys.readouterr().err
    assert not marker.exists()


class _Evil:
    """Unpickling it would create a file: `weights_only` must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))

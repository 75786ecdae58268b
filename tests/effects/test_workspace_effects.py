"""`python -m core effects` on the offline workspace at a tiny budget: every feature's
estimate with its SE, the measured top candidates, the agreement between them, the memo
(reused, and measured again when damaged), and bad input as one line before any work."""

import csv

import pytest

from core.cache.build import build_caches
from core.cli import main
from core.cli.effects import feature_scale
from core.effects.table import EffectSettings, effect_rows, feature_effects
from core.workspace.workspace import Workspace
from tests.helpers import small_workspace_config

TINY = ["--rows", "2", "--context", "16", "--top-k", "3", "--show", "3"]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A small workspace of its own, its caches built (its statistics give c's scale)."""
    path = small_workspace_config(tmp_path_factory.mktemp("effects"), workspace__name="effects")
    build_caches(Workspace.open(str(path)))
    return path


@pytest.mark.model
def test_effects_of_every_feature_and_the_measured_top_three(config, tmp_path, capsys):
    out = tmp_path / "effects.csv"
    assert main(["effects", "--workspace", str(config), *TINY, "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "on 2 forget and 2 retain rows x 16 tokens from the training documents" in shown
    assert shown.count("estimate vs measured on") == 2 and "(n = 3 measured features" in shown
    table = list(csv.DictReader(out.open()))
    assert len(table) == 4096
    measured = [row for row in table if row["measured_forget"] != "not measured"]
    assert len(measured) == 3 and all(row["forget_effect_se"] for row in measured)
    ws = Workspace.open(str(config))
    c = feature_scale(ws)  # the SAE's own scale, the default
    assert f"to -{c:g} where it fires" in shown and 0 < c < 20
    effects = feature_effects(ws, EffectSettings(2, 16, c, 3))  # the memo: no model run
    best = effects.table().sort_values("forget_effect", ascending=False).head(3)
    assert sorted(best["feature"]) == sorted(int(row["feature"]) for row in measured)


@pytest.mark.model
def test_rows_come_from_training_documents_only(config):
    ws = Workspace.open(str(config))
    rows = effect_rows(ws, "forget_corpus", EffectSettings(2, 16))
    train, heldout = ws.documents_split("forget_corpus")
    text = ws.tokenizer.decode(rows[0][1:].tolist())
    assert any(text[:40] in doc for doc in train) and not any(text[:40] in doc for doc in heldout)


@pytest.mark.model
def test_a_damaged_effects_memo_is_measured_again(config, caplog):
    ws = Workspace.open(str(config))
    settings = EffectSettings(2, 16, feature_scale(ws), 3)  # the memo the CLI test made
    first = feature_effects(ws, settings)
    (path,) = (ws.folder / "effects").glob("effects-*.npz")
    path.write_bytes(path.read_bytes()[:100])
    again = feature_effects(ws, settings)
    assert (again.arrays["candidates"] == first.arrays["candidates"]).all()
    assert "is damaged" in caplog.text and list((ws.folder / "effects").glob("*.damaged-*"))


@pytest.mark.model
def test_select_keeps_only_features_whose_estimated_effect_is_large_enough(config, capsys):
    ws = Workspace.open(str(config))
    argv = ["select", "--workspace", str(config), "--threshold", "1", "--n", "4096"]
    argv += ["--effect-rows", "2", "--effect-context", "16"]
    assert main([*argv, "--min-effect", "0.001"]) == 0
    shown = capsys.readouterr().out
    assert "estimated forget effect ≥ 0.001" in shown and "features kept" in shown
    table = feature_effects(ws, EffectSettings(2, 16, feature_scale(ws), top_k=0)).table()
    large = set(table.loc[table["forget_effect"] >= 0.001, "feature"])
    listed = {int(line.split()[1]) for line in shown.splitlines() if line[:5].strip().isdigit()}
    assert listed and listed <= large


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rows", "0"], "at least one row"),
        (["--context", "4"], "at least 8"),
        (["--c", "nan"], "c must be a number above 0"),
        (["--c", "0"], "c must be a number above 0"),
        (["--top-k", "5000"], "--top-k must be 0 to 4096"),
        (["--out", "/no/such/folder/e.csv"], "does not exist"),
    ],
    ids=["rows", "context", "nan", "zero", "top-k", "out"],
)
def test_bad_input_is_one_line_before_any_work(config, capsys, argv, message):
    assert main(["effects", "--workspace", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1

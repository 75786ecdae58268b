"""`python -m core effects` on the offline workspace at a tiny budget: every feature's
estimate with its SE, the measured top candidates, the agreement between them, the memo
(reused, and measured again when damaged), and bad input as one line before any work.
Hostile cases (issue 25 §4): memos damaged in shape, not only cut short; bad flags said
before the caches are asked for; a run SIGKILLed mid-way keeps no memo."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

from core.base.paths import REPO_ROOT
from core.cache.build import build_caches
from core.cli import main
from core.cli.effects import feature_scale
from core.effects.table import EffectSettings, effect_rows, feature_effects, kept_effects
from core.workspace.workspace import Workspace
from tests.helpers import assert_moved_aside, folder_bytes, small_workspace_config

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
        (["--rows", "-1"], "at least one row per corpus, not -1"),
        (["--context", "100000"], "Rows must have 8 to "),
        (["--c", "inf"], "c must be a number above 0 and at most 10000, not inf"),
        (["--c", "-1"], "c must be a number above 0 and at most 10000, not -1.0"),
        (["--c", "1e9"], "c must be a number above 0 and at most 10000"),
        (["--top-k", "-1"], "--top-k must be 0 to 4096 (the SAE's width), not -1"),
        (["--show", "-1"], "--show must be 0 or more, not -1"),
    ],
    ids=[
        "rows",
        "context",
        "nan",
        "zero",
        "top-k",
        "out",
        "negative-rows",
        "long-context",
        "inf",
        "negative-c",
        "huge-c",
        "negative-top-k",
        "negative-show",
    ],
)
def test_bad_input_is_one_line_before_any_work(config, capsys, argv, message):
    folder = Workspace.open(str(config)).folder / "effects"
    before = folder_bytes(folder)
    assert main(["effects", "--workspace", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert folder_bytes(folder) == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--top-k", "-1"], "--top-k must be 0 to 4096"),
        (["--rows", "0"], "at least one row per corpus"),
        (["--context", "4"], "at least 8"),
    ],
    ids=["top-k", "rows", "context"],
)
def test_bad_flags_are_said_before_the_caches_c_comes_from(
    tmp_path, cache_root, capsys, argv, message
):
    """Without --c the default c is read from the caches' statistics: a bad flag is named,
    not a cache to build, and nothing is built."""
    config = small_workspace_config(tmp_path, workspace__name="effects-no-caches")
    assert main(["effects", "--workspace", str(config), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "cache build" not in err
    assert not list(cache_root.glob("*/forget_corpus*")) and not list(cache_root.rglob("*.npz"))


@pytest.mark.parametrize("argv", [["--rows", "nan"], ["--top-k", "1.5"], ["--show", "inf"]])
def test_a_whole_number_flag_that_is_not_one_is_argparses_refusal(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(["effects", *argv])
    assert exit_.value.code == 2 and "invalid int value" in capsys.readouterr().err


def _reshaped(arrays: dict, kind: str) -> dict:
    """The kept arrays with one of them, or the provenance, wrong."""
    arrays = dict(arrays)
    if kind == "JSON in its place":
        return {}
    if kind == "without an array":
        del arrays["measured_retain"]
    elif kind == "provenance without rows":
        arrays["provenance"] = np.array('{"bos": "BOS left alone"}')
    elif kind == "a candidate out of range":
        arrays["candidates"] = arrays["candidates"] + 10**6
    elif kind == "a measured column short":
        arrays["measured_forget"] = arrays["measured_forget"][:, :1]
    elif kind == "estimated rows not the rows kept":
        arrays["estimated_retain"] = arrays["estimated_retain"][:1]
    return arrays


@pytest.mark.model
@pytest.mark.parametrize(
    "kind",
    [
        "JSON in its place",
        "without an array",
        "provenance without rows",
        "a candidate out of range",
        "a measured column short",
        "estimated rows not the rows kept",
    ],
)
def test_a_memo_of_the_wrong_shape_is_moved_aside_with_one_line(config, caplog, kind):
    ws = Workspace.open(str(config))
    settings = EffectSettings(2, 16, feature_scale(ws), 3)
    first = feature_effects(ws, settings)  # the memo the CLI test made
    folder = ws.folder / "effects"
    (path,) = [p for p in folder.glob("effects-*.npz") if _settings_of(p) == asdict(settings)]
    whole = path.read_bytes()
    with np.load(path) as kept:
        arrays = _reshaped({name: kept[name] for name in kept.files}, kind)
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        damaged = buffer.getvalue()
    else:
        damaged = b'{"provenance": {}}'
    path.write_bytes(damaged)
    try:
        assert kept_effects(ws, settings) is None and not path.exists()
        assert_moved_aside(path, damaged, caplog)
    finally:
        for aside in folder.glob(f"{path.name}.damaged-*"):
            if aside.read_bytes() == damaged:
                aside.unlink()
        path.write_bytes(whole)
    assert (kept_effects(ws, settings).arrays["candidates"] == first.arrays["candidates"]).all()


def _settings_of(path) -> dict:
    with np.load(path) as kept:
        return json.loads(str(kept["provenance"]))["settings"]


@pytest.mark.model
def test_a_kill_mid_run_leaves_no_memo_and_the_rerun_measures_whole(tmp_path, capsys):
    """`effects` in its own process, SIGKILLed once it reports its first rows: no memo is
    kept (the arrays are written whole at the end); the rerun measures and keeps them."""
    config = small_workspace_config(tmp_path, workspace__name="effects-killed")
    argv = ["effects", "--workspace", str(config), "--rows", "3", "--context", "16"]
    argv += ["--top-k", "3", "--c", "2", "--show", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "core", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    said = b""
    while b"] rows" not in said:  # the forget rows' estimates done, the retain rows' next
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, said.decode(errors="replace")
        said += chunk
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    ws = Workspace.open(str(config))
    settings = EffectSettings(3, 16, 2.0, 3)
    assert not list((ws.folder / "effects").glob("effects-*.npz"))
    assert kept_effects(ws, settings) is None
    assert main(argv) == 0 and "on 3 forget and 3 retain rows" in capsys.readouterr().out
    again = kept_effects(ws, settings)
    assert again is not None and len(again.arrays["candidates"]) == 3
    assert again.arrays["measured_retain"].shape == (3, 3)

"""The exploration commands: bad input is one line and exit 2; co-occurrence, label search
and a set made from a search on a small real workspace."""

import pytest

from core.cli import main
from core.labels.store import LabelStore


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["contrast", "--b-corpus", "retain_corpus"], "Group A: give exactly one of"),
        (["contrast", "--a", "x.txt", "--b", "y.txt", "--order", "x"], "invalid choice"),
        (["cooccurrence", "--feature", "1", "--k", "0"], "k must be ≥ 1"),
        (["feature-map", "--n-neighbors", "1"], "n_neighbors must be ≥ 2"),
        (["suggest"], "Give --feature N"),
    ],
    ids=["no-group-a", "bad-order", "k-zero", "tiny-neighbourhood", "nothing-to-suggest"],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.model
def test_cooccurrence_and_a_set_from_a_label_search(small_app_ws, capsys):
    store = LabelStore.for_workspace(small_app_ws)
    store.set_label(21, label="golgi apparatus vesicles")
    assert main(["cooccurrence", "--feature", "21", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "features firing with 21 on forget_corpus" in out and "retain_corpus" in out
    assert main(["search-labels", "golgi", "--save-set", "golgi search"]) == 0
    assert "saved 1 features" in capsys.readouterr().out
    assert store.get_set("golgi search").selection["query"] == "golgi"

"""AppTest of the Feature search page on a small real workspace: provenance, threshold and
top-n, labelling, saving a set; and what it shows when the caches are missing."""

import shutil
from dataclasses import asdict

import pytest
from streamlit.testing.v1 import AppTest

from core.base.paths import REPO_ROOT
from core.effects.table import EffectSettings, feature_effects
from core.features.stats import workspace_stats
from core.labels.store import LabelStore
from core.selection.frequency import DSGSelectionConfig, select_dsg
from core.selection.sources import typical_clamp
from core.workspace.workspace import Workspace
from tests.helpers import open_app_page

pytestmark = pytest.mark.model

APP = str(REPO_ROOT / "app.py")
PAGE = "pages/feature_search.py"


@pytest.fixture
def app(small_app_env, monkeypatch) -> AppTest:
    return open_app_page(small_app_env, monkeypatch, PAGE)


def store() -> LabelStore:
    ws = Workspace.open("offline-gemma3-270m")
    return LabelStore.for_workspace(ws)


def test_provenance_threshold_and_top_n(app):
    caption = " ".join(item.value for item in app.caption)
    assert (
        "tokens counted" in caption
        and "saebench" in caption
        and "blocks.9.hook_resid_post" in caption
    )
    assert app.metric[0].value == "20 features"
    app.number_input(key="top_n").set_value(5).run()
    assert app.metric[0].value == "5 features"
    app.radio(key="variant").set_value("authors").run()
    assert "every position counted" in " ".join(item.value for item in app.caption)
    app.number_input(key="threshold").set_value(0.0).run()  # nothing is rarer than 0
    assert app.metric[0].value == "0 features"


def test_label_a_feature_and_save_a_set(app):
    app.number_input(key="label_feature").set_value(7)
    app.text_input(key="label_text").input("<b>DNA</b> replication")
    app.multiselect(key="label_tags").select("biology")
    next(b for b in app.button if b.label == "Save label").click().run()
    assert not app.exception
    assert store().label(7).label == "<b>DNA</b> replication"
    assert "7: <b>DNA</b> replication  [biology]" in app.text[0].value  # shown as plain text
    app.text_input[[t.label for t in app.text_input].index("Save the current set as")].input(
        "top 20"
    )
    note = next(t for t in app.text_area if t.label == "Note" and t.form_id == "save-set")
    note.input("from the scatter")
    next(b for b in app.button if b.label == "Save set").click().run()
    assert not app.exception
    saved = store().get_set("top 20")
    assert len(saved.features) == 20 and saved.note == "from the scatter"
    assert saved.selection["config"] == {"threshold": 0.01, "n": 20, "variant": "saebench"}


def test_missing_caches_offer_a_build(small_app_env, monkeypatch, tmp_path):
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("UNLEARNING_LENS_CACHE_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert "not built yet" in at.warning[0].value
    assert any(b.label == "Build the caches now" for b in at.button)


def test_a_damaged_label_database_is_a_message_not_a_stack_trace(
    small_app_env, monkeypatch, tmp_path
):
    copy = tmp_path / "cache"
    shutil.copytree(small_app_env["UNLEARNING_LENS_CACHE_DIR"], copy)
    labels = copy / "offline-gemma3-270m" / "labels.sqlite"
    for leftover in labels.parent.glob("labels.sqlite*"):
        leftover.unlink()
    labels.write_bytes(b"\x8f" * 4096)
    at = open_app_page(small_app_env | {"UNLEARNING_LENS_CACHE_DIR": str(copy)}, monkeypatch, PAGE)
    assert not at.exception
    assert any("label database" in e.value and "move it away" in e.value for e in at.error)
    assert labels.read_bytes() == b"\x8f" * 4096


def test_a_row_of_the_table_opens_its_feature(app):
    app.selectbox(key="open_from_table").set_value(7).run()
    assert not app.exception
    link = next(p for p in app.get("page_link") if "Open feature 7" in p.proto.label)
    assert "feature=7" in link.proto.page or link.proto.query_string == "feature=7"


def _save_set(app: AppTest, name: str) -> None:
    app.text_input[[t.label for t in app.text_input].index("Save the current set as")].input(name)
    next(b for b in app.button if b.label == "Save set").click().run()
    assert not app.exception, app.exception


def test_dsg_percentiles_select_and_save_with_their_rule(app):
    app.radio(key="mode").set_value("dsg").run()
    app.number_input(key="ratio_percentile").set_value(99.0)
    app.number_input(key="top_n").set_value(5).run()
    assert not app.exception, app.exception
    config = DSGSelectionConfig(ratio_percentile=99.0, n=5)
    table, _ = workspace_stats(Workspace.open("offline-gemma3-270m"))
    expected = select_dsg(table, config)["feature"].tolist()
    assert 0 < len(expected) <= 5
    assert app.metric[0].value == f"{len(expected)} features"
    assert any("DSG (METHOD §10)" in c.value and "99th" in c.value for c in app.caption)
    assert app.dataframe[0].value["feature"].tolist() == expected  # the importances table
    _save_set(app, "dsg 99")
    saved = store().get_set("dsg 99")
    assert list(saved.features) == expected
    assert saved.selection["mode"] == "DSG importance percentiles (METHOD §10)"
    assert saved.selection["config"] == asdict(config)


def test_a_shared_link_restores_the_search_controls(small_app_env, monkeypatch):
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(APP, default_timeout=180)
    link = {"mode": "dsg", "variant": "authors", "top_n": "7", "ratio_percentile": "80.0"}
    link |= {"sort": "feature id", "only_labelled": "True", "search_text": "dna"}
    at.query_params.update(link | {"min_forget": "2", "forget_percentile": "x"})  # 2 bad ones
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.radio(key="mode").value == "dsg" and at.radio(key="variant").value == "authors"
    assert at.number_input(key="top_n").value == 7
    assert at.number_input(key="ratio_percentile").value == 80.0
    assert at.number_input(key="forget_percentile").value == 5.0  # "x": the default
    assert at.number_input(key="min_forget").value == 0.0  # 2 is out of range: the default
    assert at.selectbox(key="sort").value == "feature id"
    assert at.checkbox(key="only_labelled").value is True
    assert at.text_input(key="search_text").value == "dna"
    at.number_input(key="top_n").set_value(9).run()
    at.text_input(key="search_text").input("").run()
    assert at.query_params["top_n"] == "9" and "search_text" not in at.query_params


def test_effects_estimated_at_the_pages_settings_join_the_table(app):
    ws = Workspace.open("offline-gemma3-270m")
    table, _ = workspace_stats(ws)
    c = typical_clamp(table, table["feature"].tolist())  # the page's default c
    feature_effects(ws, EffectSettings(2, 16, c, 3))  # as the page's button would
    app.number_input(key="effect_rows").set_value(2)
    app.number_input(key="effect_context").set_value(16)
    app.number_input(key="effect_k").set_value(3).run()
    app.selectbox(key="sort").set_value("estimated forget effect").run()
    assert not app.exception
    caption = " ".join(item.value for item in app.caption)
    assert "mean over 2 forget and 2 retain rows × 16 tokens" in caption
    assert "How well the estimate ranks the measured effect: forget: Spearman" in caption
    assert "(n = 3," in caption
    assert not any(b.label == "Estimate effects (loads the model)" for b in app.button)
    app.number_input(key="effect_rows").set_value(3).run()  # not estimated at 3 rows
    assert any(b.label == "Estimate effects (loads the model)" for b in app.button)
    assert "sorted by feature id" in " ".join(item.value for item in app.caption)
    app.number_input(key="effect_rows").set_value(2).run()
    app.switch_page("pages/activation_examples.py").run()  # the feature's own effect
    shown = " ".join(item.value for item in app.caption)
    assert "Effect when clamped alone to −" in shown and "2 forget, 2 retain rows × 16" in shown
    assert "estimated forget +" in shown or "estimated forget -" in shown


def test_contradictory_tags_are_refused_and_the_table_ranks_by_the_ratio_interval(app):
    """The tag picker offers no "select all" (Enter would pick "not biology" beside
    "biology"); a browser test of Enter is not added, the store's refusal is the guarantee."""
    picker = app.multiselect(key="label_tags")
    assert picker.proto.select_all == 0
    app.number_input(key="label_feature").set_value(8)
    picker.select("biology").select("not biology")
    next(b for b in app.button if b.label == "Save label").click().run()
    assert "contradict each other" in " ".join(e.value for e in app.error)
    assert store().label(8).tags == ()
    assert app.selectbox(key="sort").value == "ratio, its 95% interval's low end"
    table = app.dataframe[0].value
    ranked = table["ratio_low"].dropna()
    assert len(ranked) and (ranked.diff().dropna() <= 0).all()  # the default order

"""AppTest of the Live intervention page on the small real workspace: a short run shows the
baseline vs intervened table and the per-question drill-down; bad ids say so."""

import re
import time

import pytest
from streamlit.testing.v1 import AppTest

from core.base.paths import REPO_ROOT
from core.evaluation.protocol import QuestionProtocol
from core.evaluation.settings import EvalSettings
from core.labels.store import LabelStore
from tests.helpers import open_app_page, shown

pytestmark = pytest.mark.model

PAGE = "pages/intervention.py"


@pytest.fixture
def app(small_app_env, monkeypatch) -> AppTest:
    return open_app_page(small_app_env, monkeypatch, PAGE, timeout=600)


def _number(at: AppTest, label: str):
    return next(n for n in at.number_input if n.label == label)


def _run_and_wait(app: AppTest, timeout: float = 600, button: str = "Run", tables: int = 1) -> None:
    """Press `button`, then rerun the page until `tables` result tables show."""
    next(b for b in app.button if b.label == button).click().run()
    deadline = time.monotonic() + timeout
    while len(app.table) < tables:
        assert not app.exception, app.exception
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(1)
        app.run()


def _known_filter(app: AppTest):
    return next(t for t in app.toggle if t.label == "Known-question filter")


def test_short_run_shows_accuracy_and_loss_tables(app):
    _number(app, "n").set_value(3).run()
    _known_filter(app).set_value(False)
    _number(app, "Questions per set (0 = all)").set_value(4)  # 3 + 2 of them in the selection split
    _number(app, "Loss rows per text").set_value(1)
    next(s for s in app.slider if s.label == "Global multiplier").set_value(1.5)
    _run_and_wait(app)
    assert not app.exception, app.exception
    table = app.table[0].value
    assert "WMDP-bio, all questions" in table.index
    assert table.loc["WMDP-bio, all questions", "n"] == 3
    assert any("known-question filter has not run" in shown(w.value) for w in app.warning)
    assert any("blocks.9.hook_resid_post" in shown(c.value) for c in app.caption)
    assert app.dataframe, "the per-question drill-down is shown"
    selectivity = next(x for x in app.metric if x.label.startswith("Selectivity"))
    assert re.fullmatch(r"-|-?[\d.]+( \[-?[\d.]+, -?[\d.]+\])?", selectivity.value)
    assert "Fieller" in selectivity.help
    tiles = [x.label for x in app.metric if x.label.startswith("Loss added on")]
    assert tiles == ["Loss added on general text = retain text", "Loss added on forget text"]
    assert "no standard error (it needs two rows)" in app.metric[0].help  # one row each
    assert any(c.value == "5 of 5 questions shown" for c in app.caption)
    next(t for t in app.toggle if t.label == "Known only").set_value(True).run()
    assert any(c.value == "0 of 5 questions shown" for c in app.caption)  # none known yet


def test_out_of_range_ids_are_reported(app):
    app.radio[0].set_value("ids").run()
    next(t for t in app.text_input if t.label == "Feature ids").input("5, 99999").run()
    assert any("Out of range" in e.value and "99999" in e.value for e in app.error)
    assert any("1 features: 5" in c.value for c in app.caption)


def test_gradient_attribution_picks_the_features(app):
    app.radio[0].set_value("attribution").run()
    assert any("Press Attribute" in i.value for i in app.info)  # the filter did not run
    known = app.toggle(key="attribution_known")
    assert known.value is EvalSettings.for_device("cpu").known_filter is True  # as the CLI
    known.set_value(False)
    _number(app, "Questions to attribute").set_value(2).run()
    next(b for b in app.button if b.label == "Attribute").click().run()
    assert not app.exception, app.exception
    ranking = app.dataframe[0].value
    assert 0 < len(ranking) <= 10 and (ranking["mean attribution"] > 0).all()
    inside = ranking["95% CI low"] <= ranking["mean attribution"]
    assert (inside & (ranking["mean attribution"] <= ranking["95% CI high"])).all()
    assert any("2 all sampled" in c.value and "n = 2" in c.value for c in app.caption)
    chosen = ", ".join(map(str, ranking["feature"].tolist()[:3]))
    assert any(f"features: {chosen}" in c.value for c in app.caption)
    _number(app, "c (or m for scale)").set_value(9000.0)
    next(s for s in app.slider if s.label == "Global multiplier").set_value(5.0)
    next(b for b in app.button if b.label == "Run").click().run()
    assert not app.exception, app.exception  # the message is escaped, not a crash
    assert any("absurd" in shown(e.value) for e in app.error)


def test_screening_runs_each_feature_then_the_kept_together(app):
    _number(app, "n").set_value(2).run()
    _known_filter(app).set_value(False)
    _number(app, "Questions per set (0 = all)").set_value(2)
    _number(app, "Loss rows per text").set_value(1)
    _run_and_wait(app)  # the form's settings apply
    _number(app, "Largest MMLU accuracy drop kept").set_value(1.0)
    next(b for b in app.button if b.label == "Screen").click().run()
    assert not app.exception, app.exception
    assert any(m.value.startswith("Kept 2 of 2") for m in app.markdown)
    singles, cumulative = app.dataframe[-2].value, app.dataframe[-1].value
    assert len(singles) == 2 and singles["kept"].all()
    assert cumulative["k"].tolist() == [1, 2]
    hooks = [c for c in app.caption if "hook blocks.9.hook_resid_post" in shown(c.value)]
    assert len(hooks) == 2, "the run and the screening each say where their numbers come from"


def _progress_texts(app: AppTest) -> list[str]:
    return [p.proto.text for p in app.get("progress")]


def test_a_bad_sweep_grid_is_a_message_and_no_stuck_bar(app):
    next(t for t in app.text_input if t.label == "Numbers of features").input("0")
    next(b for b in app.button if b.label == "Run sweep").click().run()
    assert not app.exception, app.exception
    assert any("≥ 1" in e.value for e in app.error)
    assert not any("Sweeping" in text for text in _progress_texts(app))


def test_a_run_shows_its_time_left_can_be_cancelled_and_keeps_nothing(app):
    _number(app, "Questions per set (0 = all)").set_value(40)
    _known_filter(app).set_value(False)
    next(b for b in app.button if b.label == "Run").click().run()
    deadline = time.monotonic() + 300
    while not any(" left (the run goes on" in text for text in _progress_texts(app)):
        assert time.monotonic() < deadline and not app.table, _progress_texts(app)
        time.sleep(1)
        app.run()
    assert re.search(r" · \d+:\d\d left \(", " ".join(_progress_texts(app)))
    next(b for b in app.button if b.label == "Cancel the run").click().run()
    deadline = time.monotonic() + 300
    while not any("cancelled" in e.value for e in app.error):
        assert time.monotonic() < deadline and not app.table, "the run was not cancelled"
        time.sleep(1)
        app.run()
    assert not app.exception


def test_a_run_the_form_no_longer_shows_is_listed_and_can_be_cancelled_from_the_list(app):
    _number(app, "Questions per set (0 = all)").set_value(40)
    _known_filter(app).set_value(False)
    _number(app, "c (or m for scale)").set_value(3.25)
    next(b for b in app.button if b.label == "Run").click().run()
    _number(app, "n").set_value(3).run()  # other features: the form now shows another run
    listed = "**Runs going on in this workspace (1)**"
    assert any(m.value == listed for m in app.markdown), [m.value for m in app.markdown]
    title = [t for t in _progress_texts(app) if t.startswith("Selection run: ")]
    assert title and "clamp 3.25; 40 questions a set" in title[0], _progress_texts(app)
    assert not any(b.label == "Cancel the run" for b in app.button)  # not this form's run
    next(b for b in app.button if b.label == "Cancel").click().run()
    deadline = time.monotonic() + 300
    while any(m.value.startswith("**Runs going on") for m in app.markdown):
        assert time.monotonic() < deadline, "the listed run was not cancelled"
        time.sleep(1)
        app.run()
    assert not app.exception and not app.table


def test_a_shared_link_restores_the_source_and_c(small_app_env, monkeypatch):
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=600)
    at.query_params.update({"source": "selection", "c": "2.5", "author": "ada"})
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.radio[0].value == "selection"
    assert _number(at, "c (or m for scale)").value == 2.5
    assert at.sidebar.text_input[0].value == "ada"
    at.radio[0].set_value("ids").run()
    assert at.query_params["source"] == "ids"


def test_a_gated_run_shows_how_often_the_gate_edits(app):
    _number(app, "n").set_value(3).run()
    _number(app, "Questions per set (0 = all)").set_value(4)
    _number(app, "Loss rows per text").set_value(1)
    _known_filter(app).set_value(False)
    app.toggle(key="gate").set_value(True)
    _run_and_wait(app)
    table = app.table[0].value
    assert "gate on: WMDP-bio prompts (share of sequences edited)" in table.index
    assert any("alpha = " in shown(c.value) for c in app.caption)


def test_a_set_saved_with_a_gate_starts_gated_with_its_kept_alpha(
    small_app_env, small_app_ws, monkeypatch
):
    calibration = {"percentile": 90.0, "sae": small_app_ws.sae_fingerprint()}
    kept = {"alpha": 0.1234, "rule": "any selected", "calibration": calibration}
    store = LabelStore.for_workspace(small_app_ws)
    store.save_set("gated bio", [3, 7, 11], selection={"gate": kept}, overwrite=True)
    at = open_app_page(small_app_env, monkeypatch, PAGE, timeout=600)
    at.radio[0].set_value("set").run()
    next(s for s in at.selectbox if s.label == "Set").set_value("gated bio").run()
    assert not at.exception, at.exception
    assert at.toggle(key="gate").value is True
    assert _number(at, "Gate percentile").value == 90.0
    assert at.selectbox(key="gate_rule").value == "any selected"
    said = [shown(c.value) for c in at.caption if "Gate: " in shown(c.value)]
    assert said and "alpha = 0.1234" in said[0] and "kept with the set 'gated bio'" in said[0]


def test_a_set_reported_on_the_questions_that_chose_it_needs_allow_overlap(
    small_app_env, small_app_ws, monkeypatch
):
    reported = QuestionProtocol(small_app_ws, EvalSettings(question_limit=2)).split_ids()
    store = LabelStore.for_workspace(small_app_ws)
    store.save_set("chose on report", [3, 7], selection={"question_ids": reported}, overwrite=True)
    at = open_app_page(small_app_env, monkeypatch, PAGE, timeout=600)
    at.radio[0].set_value("set").run()
    next(s for s in at.selectbox if s.label == "Set").set_value("chose on report").run()
    _number(at, "Questions per set (0 = all)").set_value(2)  # 1 + 1 in the report split
    _number(at, "Loss rows per text").set_value(1)
    _known_filter(at).set_value(False)
    report = "Report on held-out questions"
    next(b for b in at.button if b.label == report).click().run()
    assert not at.exception, at.exception
    refused = [shown(e.value) for e in at.error]
    assert any(e.startswith("2 of the 2 questions") and "Allow overlap" in e for e in refused)
    assert not at.table  # nothing ran
    next(c for c in at.checkbox if c.label == "Allow overlap").check()
    _run_and_wait(at, button=report)
    said = "Optimistic: scored on 2 questions that chose its features"
    assert any(shown(c.value).startswith(said) for c in at.caption)


def test_run_tunes_on_the_selection_split_and_a_report_counts_the_looks_before_it(app):
    defaults = EvalSettings.for_device("cpu")  # the CLI's, not a copy
    assert _number(app, "Questions per set (0 = all)").value == defaults.question_limit
    assert _number(app, "Loss rows per text").value == defaults.loss_rows
    assert _known_filter(app).value is defaults.known_filter
    _number(app, "n").set_value(2).run()
    _known_filter(app).set_value(False)
    _number(app, "Questions per set (0 = all)").set_value(3)
    _number(app, "Loss rows per text").set_value(1)
    _run_and_wait(app)
    titles = [h.value for h in app.subheader]
    assert "Results (selection split)" in titles and "Results on held-out questions" not in titles
    runs = [re.match(r"Selection run (\d+) of these features", shown(c.value)) for c in app.caption]
    run = next(int(m.group(1)) for m in runs if m)  # earlier tests ran these features too
    _run_and_wait(app, button="Report on held-out questions", tables=2)
    assert not app.exception, app.exception
    assert "Results on held-out questions" in [h.value for h in app.subheader]
    said = rf"Chosen after {run} selection runs of these features; look \d+ at the report split"
    assert any(re.match(said, shown(c.value)) for c in app.caption)


@pytest.mark.parametrize(
    "link",
    [
        {"multiplier": "100", "c": "nan", "method": "rm", "skip_bos": "yes", "source": "x"},
        {"multiplier": "-1", "c": "1e9", "set": "no such set"},
    ],
    ids=["above-nan-unknown", "below-huge-missing-set"],
)
def test_a_link_value_no_widget_can_take_is_ignored_with_a_notice(small_app_env, monkeypatch, link):
    """/intervention?multiplier=100 crashed the page (StreamlitValueAboveMaxError)."""
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=600)
    at.query_params.update(link)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    notices = " ".join(shown(w.value) for w in at.warning)
    for key, value in link.items():
        assert f"The link's {key} = '{value}' is ignored" in notices, notices
    assert next(s for s in at.slider if s.label == "Global multiplier").value == 1.0
    assert at.selectbox(key="method").value == "clamp"


def test_each_slider_names_its_feature_by_label_and_tags(small_app_ws, app):
    from core.labels.store import LabelStore

    LabelStore.for_workspace(small_app_ws).set_label(5, label="cell *walls*", tags=["biology"])
    app.radio[0].set_value("ids").run()
    next(t for t in app.text_input if t.label == "Feature ids").input("5, 6").run()
    names = [shown(s.label) for s in app.slider if s.label.startswith("feature ")]
    assert names[0].startswith("feature 5 'cell *walls*' [biology] × (mean"), names
    assert names[1].startswith("feature 6 × (mean")  # unlabelled: its id alone

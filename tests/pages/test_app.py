"""AppTest of the app shell: sidebar provenance, workspace switching, bad configs."""

import shutil
import tomllib

import pytest
from streamlit.testing.v1 import AppTest

from core.base.paths import PRESETS_DIR, REPO_ROOT
from core.labels.export import MAX_IMPORT_BYTES
from tests.helpers import shown

APP = str(REPO_ROOT / "app.py")
TIMEOUT = 120  # the first run imports sae_lens (~10 s) on a busy CPU


def sidebar_text(at: AppTest) -> str:
    return "\n".join(shown(item.value) for item in at.sidebar.markdown)


def test_sidebar_shows_the_offline_workspace_and_its_provenance():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "offline-gemma3-270m"
    text = sidebar_text(at)
    for expected in ("google/gemma-3-270m", "blocks.9.hook_resid_post", "float32", "biology2e"):
        assert expected in text
    assert not at.sidebar.error
    assert at.title[0].value == "Workspace"


def test_an_unknown_workspace_in_the_link_is_ignored_with_a_notice():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["workspace"] = "no-such-workspace"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "offline-gemma3-270m"
    notices = [shown(w.value) for w in at.warning]
    assert any("The link's workspace = 'no-such-workspace' is ignored" in n for n in notices)


def test_hub_workspace_without_network_shows_the_fix(unreachable_hub):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["workspace"] = "gemma-2-2b-it-L7"  # AppTest drops the sidebar on reruns
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "gemma-2-2b-it-L7"
    assert "layer_7/width_16k/canonical" in sidebar_text(at)
    errors = [shown(item.value) for item in at.sidebar.error]
    assert len(errors) == 1 and "Needs the Hugging Face hub" in errors[0]
    assert 'source = "local"' in errors[0]


def test_malformed_config_is_reported_not_raised(tmp_path, monkeypatch):
    shutil.copy(PRESETS_DIR / "offline-gemma3-270m.toml", tmp_path)
    (tmp_path / "broken.toml").write_text("[model\n")
    monkeypatch.setenv("UNLEARNING_LENS_CONFIGS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["workspace"] = "broken"
    at.run()
    assert not at.exception
    assert "not valid TOML" in shown(at.sidebar.error[0].value)


@pytest.mark.parametrize(
    "page",
    [
        "pages/feature_search.py",
        "pages/activation_examples.py",
        "pages/intervention.py",
        "pages/run_history.py",
    ],
    ids=["search", "examples", "intervention", "history"],
)
def test_every_page_renders(page):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(page).run()
    assert not at.exception


def test_uploads_are_refused_above_the_import_limit():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 1_000_000 >= MAX_IMPORT_BYTES
    assert config["server"]["maxUploadSize"] <= 10


def test_an_unexpected_error_is_a_short_message_and_a_logged_trace(
    small_app_env, monkeypatch, caplog
):
    import pages.search_view

    def broken(*args, **kwargs):
        raise RuntimeError("an internal detail that must not reach the page")

    monkeypatch.setattr(pages.search_view, "search_view", broken)
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/feature_search.py").run()
    assert not at.exception
    shown_errors = [shown(e.value) for e in at.error]
    assert any("Something went wrong on this page" in e for e in shown_errors)
    assert not any("internal detail" in e for e in shown_errors)
    assert "internal detail" in caplog.text

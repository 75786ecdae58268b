"""AppTest of the workspace page's time estimates (issue 28 §4): from the throughput the
last cache build measured here, or a plain statement that nothing was measured yet."""

import pytest

from core.workspace.throughput import NOT_MEASURED
from tests.helpers import open_app_page, shown

pytestmark = pytest.mark.model

PAGE = "pages/workspace.py"


def captions(at) -> list[str]:
    return [shown(caption.value) for caption in at.caption]


def test_the_health_button_estimates_from_the_last_cache_build(small_app_env, monkeypatch):
    at = open_app_page(small_app_env, monkeypatch, PAGE)
    assert any(b.label == "Measure SAE health (loads the model)" for b in at.button)
    said = [c for c in captions(at) if c.startswith("How long:")]
    assert len(said) == 1 and "at the rate of the last cache build here" in said[0]
    assert "~" not in said[0]


def test_without_a_timed_run_the_page_says_so(small_app_env, monkeypatch, tmp_path):
    env = small_app_env | {"UNLEARNING_LENS_CACHE_DIR": str(tmp_path / "cache")}
    at = open_app_page(env, monkeypatch, PAGE)
    said = [c for c in captions(at) if c.startswith("How long:")]
    assert said and all(NOT_MEASURED in c for c in said)  # the cache build's and health's


def test_a_kept_health_offers_a_recompute_with_its_date(small_app_env, small_app_ws, monkeypatch):
    import shutil

    from core.sae.health import health_measured_at, health_path, sae_health

    sae_health(small_app_ws, n_rows=1)  # one row: seconds, not the page's 64 rows' minutes
    shutil.copy(health_path(small_app_ws, 1), health_path(small_app_ws, 64))  # kept for 64
    at = open_app_page(small_app_env, monkeypatch, PAGE)
    when = health_measured_at(small_app_ws)
    assert [b.label for b in at.button if "health" in b.label or "Recompute" in b.label] == [
        f"Recompute (measured {when})"
    ]
    assert at.dataframe and f"Measured {when}." in captions(at), "the kept health, dated"

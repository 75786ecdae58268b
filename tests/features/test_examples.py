"""Activation examples: top contexts against a direct computation, intervals, the HTML
renderer's escaping, pasted text, and the page (AppTest)."""

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.base.paths import REPO_ROOT
from core.cache.store import SparseActivationStore
from core.errors import UserError
from core.features.examples import (
    MAX_PASTED_TOKENS,
    FeatureActivations,
    features_on_text,
    logit_effects,
)
from core.runtime.forward import final_logits
from core.workspace.workspace import Workspace
from pages.token_render import render_tokens
from tests.helpers import shown

pytestmark = pytest.mark.model


@pytest.fixture
def small(small_app_ws) -> Workspace:
    return small_app_ws


@torch.no_grad()
def dense_activations(ws: Workspace, cache: SparseActivationStore) -> np.ndarray:
    tokens = torch.from_numpy(np.asarray(cache.tokens())).long()
    return ws.sae.encode(ws.residual(tokens)).numpy()  # [rows, ctx, d_sae]


def test_top_contexts_equal_a_direct_computation(small):
    cache = SparseActivationStore.for_workspace(small, "forget_corpus")
    acts = dense_activations(small, cache)
    counts = (acts[:, 1:] > 0).sum((0, 1))
    feature = int(np.argsort(counts)[-50])  # fires in several rows, not everywhere
    read = FeatureActivations.read(cache, feature)
    top = read.top(k=5, left=4, right=2)
    row_max = acts[:, :, feature].max(1)
    expected_rows = [r for r in np.lexsort((np.arange(len(row_max)), -row_max)) if row_max[r] > 0][
        :5
    ]
    assert [c.row for c in top] == expected_rows
    for context in top:
        values = acts[context.row, :, feature]
        assert context.position == int(np.argmax(values))
        assert context.start == max(0, context.position - 4)
        window = slice(context.start, context.start + len(context.token_ids))
        assert context.token_ids == tuple(np.asarray(cache.tokens())[context.row, window])
        np.testing.assert_allclose(context.values, values[window], rtol=3e-3, atol=1e-2)


def test_intervals_are_value_ranges_weakest_first(small):
    cache = SparseActivationStore.for_workspace(small, "forget_corpus")
    read = FeatureActivations.read(cache, int(np.argmax(np.diff(cache.csc()[0]))))
    intervals = read.by_interval(intervals=4, per_interval=2)
    assert [round(lo, 6) for lo, _, _ in intervals] == sorted(
        round(lo, 6) for lo, _, _ in intervals
    )
    for lo, hi, examples in intervals:
        assert all(lo < c.value <= hi + 1e-6 for c in examples)


def test_renderer_escapes_everything():
    page = render_tokens(
        ["<script>alert(1)</script>", ' "quoted" ', "\n", "\x07"], [1, 0, 2, 0], 2.0, mark=2
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&quot;quoted&quot;" in page and "↵" in page and "\\x07" in page
    assert page.count('class="ul-tok"') == 4
    assert "outline" in page.split('class="ul-tok"')[3]


def test_pasted_text_is_capped_and_empty_text_refused(small):
    with pytest.raises(UserError, match="Paste some text"):
        features_on_text(small, "   ")
    rows, truncated = features_on_text(small, "cell " * (MAX_PASTED_TOKENS + 50))
    assert truncated and len(rows) == MAX_PASTED_TOKENS + 1
    assert all(len(item["features"]) <= 5 for item in rows)


@torch.no_grad()
def test_logit_effects_are_what_the_feature_does_to_the_logits(small):
    promote, suppress = logit_effects(small, 3, k=5)
    assert len(promote) == len(suppress) == 5
    model = small.model
    resid = model(model.to_tokens("The cell membrane is made of"), stop_at_layer=model.cfg.n_layers)
    last = resid[0, -1]
    nudged = last + 1e-3 * last.norm() * small.sae.W_dec[3]  # the decoder direction, added
    shift = final_logits(model, nudged) - final_logits(model, last)  # after the last block
    near = 500  # of 262k tokens
    raised = {small.tokenizer.decode([int(i)]) for i in shift.topk(near).indices}
    lowered = {small.tokenizer.decode([int(i)]) for i in (-shift).topk(near).indices}
    assert {token for token, _ in promote} <= raised
    assert {token for token, _ in suppress} <= lowered
    with pytest.raises(UserError, match="out of range"):
        logit_effects(small, 4096)


def test_page_opens_a_feature_by_deep_link(small_app_env, monkeypatch):
    for key, value in small_app_env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=180)
    at.query_params["feature"] = "5"
    at.run()
    at.switch_page("pages/activation_examples.py").run()
    assert not at.exception, at.exception
    assert at.number_input[0].value == 5
    for typed in (7, 9, 11):  # every id typed is taken, one after another
        at.number_input[0].set_value(typed).run()
        assert at.number_input[0].value == typed and at.query_params["feature"] == str(typed)
    assert "tokens counted" in " ".join(c.value for c in at.caption)
    caption = " ".join(c.value for c in at.caption)
    assert "95% intervals, clustered by row: forget [" in caption and "retain [" in caption
    forget = next(m for m in at.metric if m.label == "Forget frequency")
    assert "tokens in" in forget.help and "95% interval [" in forget.help
    at.query_params["feature"] = "99999"
    at.run()
    assert not at.exception and at.number_input[0].value == 11  # ignored, said
    assert any(
        "feature = '99999' is ignored: not a whole number from 0 to" in shown(w.value)
        for w in at.warning
    )
    at.query_params["feature"] = "![log in](http://example.invalid/a.png)"
    at.run()
    assert not at.exception
    said = [w.value for w in at.warning if "is ignored" in w.value]
    assert len(said) == 1 and r"'\!\[log in\]\(http\://example.invalid/a.png\)'" in said[0]


def test_a_feature_that_never_fires_on_one_corpus_has_no_examples(small):
    forget = SparseActivationStore.for_workspace(small, "forget_corpus")
    retain = SparseActivationStore.for_workspace(small, "retain_corpus")
    forget_counts, retain_counts = (np.diff(c.csc()[0]) for c in (forget, retain))
    feature = int(np.flatnonzero((forget_counts == 0) & (retain_counts > 0))[0])
    read = FeatureActivations.read(forget, feature)
    assert not read.fires and read.top() == [] and read.by_interval() == []
    assert [len(a) for a in read.row_maxima()] == [0, 0]
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=180)
    at.query_params["feature"] = str(feature)
    at.run()
    at.switch_page("pages/activation_examples.py").run()
    assert not at.exception, at.exception
    assert any("never fires on the cached forget" in i.value for i in at.info)

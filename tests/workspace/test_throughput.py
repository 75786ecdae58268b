"""Time estimates from throughput measured here (issue 28 §4): none before a run is timed,
then the work to do over the rate measured last, converted between kinds of run by the
weights each token goes through."""

import pytest

from core.sae.health import HEALTH_ROLES, HEALTH_RUN, health_estimate
from core.workspace.throughput import (
    NOT_MEASURED,
    duration,
    estimate,
    forward_params,
    measured_runs,
    record_throughput,
)

pytestmark = pytest.mark.model


def test_nothing_is_estimated_before_a_run_is_timed(offline_ws, cache_root):
    assert measured_runs(offline_ws) == {}
    assert estimate(offline_ws, "cache build", 1_000, 1, 0) == NOT_MEASURED
    assert health_estimate(offline_ws) == NOT_MEASURED


def test_an_estimate_is_the_work_over_the_rate_measured_last(offline_ws, cache_root):
    ws = offline_ws
    hook, full = forward_params(ws)
    blocks = ws.model.blocks
    assert hook == sum(p.numel() for b in blocks[: ws.layer + 1] for p in b.parameters())
    assert hook < full
    built = record_throughput(ws, "cache build", 10_000, 20.0, hook_passes=1, full_passes=0)
    assert built.tokens_per_second == 500
    assert estimate(ws, "cache build", 30_000, 1, 0).startswith("≈ 1 min at the rate of")
    # never timed itself: two full forwards per token at the build's weights per second
    tokens = len(HEALTH_ROLES) * 64 * ws.config.budgets.context_length
    seconds = tokens * 2 * full / (500 * hook)
    assert health_estimate(ws).startswith(f"≈ {duration(seconds)} at the rate of the last cache")
    record_throughput(ws, HEALTH_RUN, 4_096, 64.0, hook_passes=0, full_passes=2)
    assert health_estimate(ws).startswith(f"≈ {duration(tokens / 64)} at the rate of the last SAE")
    assert set(measured_runs(ws)) == {"cache build", HEALTH_RUN}  # each kind kept


def test_a_cache_build_records_its_throughput(small_app_ws):
    built = measured_runs(small_app_ws)["cache build"]
    assert built.tokens == 32 * 64  # the last cache the session's fixture built
    assert built.seconds > 0 and built.device == small_app_ws.device


def test_durations_are_said_roughly():
    assert [duration(s) for s in (0.2, 42, 150, 5400)] == ["1 s", "42 s", "2 min", "1.5 h"]

"""The metric table and sweep axes every page and the CLI show, from the metrics alone."""

from core.evaluation.metrics import metric_rows, pareto_axes


def _metrics(**overrides) -> dict:
    metrics = {
        "wmdp_known_n": 0,
        "wmdp_known_baseline": None,
        "wmdp_known_accuracy": None,
        "wmdp_all_n": 4,
        "wmdp_all_baseline": 0.5,
        "wmdp_all_accuracy": 0.25,
        "mmlu_known_n": 0,
        "mmlu_known_baseline": None,
        "mmlu_known_accuracy": None,
        "mmlu_all_n": 8,
        "mmlu_all_baseline": 0.5,
        "mmlu_all_accuracy": 0.5,
        "apart": {"college_biology": {"all_n": 2, "all_baseline": 1.0, "all_accuracy": 0.5}},
    }
    for name in ("general", "forget", "retain"):
        metrics[f"{name}_loss_clean"] = 3.0
        metrics[f"{name}_loss"] = 3.5
    return metrics | overrides


def test_rows_give_percent_with_n_and_leave_unmeasured_empty():
    rows = {row["measure"]: row for row in metric_rows(_metrics())}
    known = rows["WMDP-bio, known questions"]
    assert known["n"] == 0 and known["baseline"] is None and known["change"] is None
    everything = rows["WMDP-bio, all questions"]
    assert (everything["n"], everything["baseline"], everything["intervened"]) == (4, 50.0, 25.0)
    assert everything["change"] == -25.0
    assert rows["college biology (apart), all"]["intervened"] == 50.0
    assert rows["CE loss on forget text (nats)"]["change"] == 0.5


def test_sweeps_plot_known_accuracy_only_when_some_point_has_it():
    assert pareto_axes([{"mmlu_known_accuracy": None}]) == (
        "mmlu_all_accuracy",
        "wmdp_all_accuracy",
    )
    assert pareto_axes([{"mmlu_known_accuracy": None}, {"mmlu_known_accuracy": 0.9}]) == (
        "mmlu_known_accuracy",
        "wmdp_known_accuracy",
    )

"""What a sweep's Pareto plot draws: one series per gate setting with 95% intervals, beside
the published reference points. Plain dicts, so any plotting library can draw them."""

from __future__ import annotations

from core.evaluation.metrics import pareto_axes


def _interval_error(points: list[dict], key: str) -> dict | None:
    """Plotly-style asymmetric error bars from each point's 95% interval."""
    intervals = [p.get(f"{key}_ci") for p in points]
    if any(i is None for i in intervals):
        return None
    return {
        "array": [hi - p[key] for p, (_, hi) in zip(points, intervals, strict=True)],
        "arrayminus": [p[key] - lo for p, (lo, _) in zip(points, intervals, strict=True)],
    }


def _family(points: list[dict]) -> str:
    percentile = points[0].get("gate_percentile")
    return "ungated" if percentile is None else f"gated at the {percentile:g}th percentile"


def _point_text(point: dict) -> str:
    text = f"thr {point['threshold']}, n {point['n']}, c {point['c']}"
    if point.get("gate_percentile") is not None:
        on = (point.get("gate") or {}).get("wmdp") or {}
        text += f", gate p{point['gate_percentile']:g} alpha {point['gate_alpha']:.3f}"
        if on.get("on") is not None:
            text += f", on for {on['on']:.0%} of WMDP prompts"
    return text


REFERENCE_SERIES = (  # name, which reference points, marker
    ("paper's SAE clamp (METHOD §8)", "clamp", "x"),
    ("RMU (METHOD §8)", "rmu", "star"),
    ("DSG (METHOD §10)", "dsg", "diamond"),
)


def _reference_kind(point: dict) -> str:
    return "rmu" if point.get("rmu") else "dsg" if point.get("dsg") else "clamp"


def pareto_plot(result: dict, against: str) -> dict:
    """What a sweep's Pareto plot draws, `against` "side effect" or "loss added": forget
    accuracy (known questions when any point has them) with 95% intervals, one series per
    gate setting (ungated and each gate percentile) on the same axes; the published reference
    points (METHOD §8 and §10, known questions, labelled by method) only on known-question
    axes, and only those that report the x measure."""
    points = [p for p in result["points"] if "skipped" not in p]
    side_key, y_key = pareto_axes(points)
    x_key = side_key if against == "side effect" else "loss_added"
    families: dict[object, list[dict]] = {}
    for point in points:
        families.setdefault(point.get("gate_percentile"), []).append(point)
    series = []
    for family in families.values():
        if x_key == "loss_added":
            ses = [p.get("loss_added_se") for p in family]
            x_error = None if None in ses else {"array": ses, "arrayminus": ses}
        else:
            x_error = _interval_error(family, x_key)
        series.append(
            {
                "name": f"this workspace, {_family(family)}",
                "x": [p[x_key] for p in family],
                "y": [p[y_key] for p in family],
                "x_error": x_error,
                "y_error": _interval_error(family, y_key),
                "text": [_point_text(p) for p in family],
                "symbol": "circle" if family[0].get("gate_percentile") is None else "square",
            }
        )
    known = y_key.startswith("wmdp_known")
    reference_x = "mmlu" if x_key != "loss_added" else "loss_added"
    for name, kind, symbol in REFERENCE_SERIES:
        chosen = [
            r
            for r in result["reference"]
            if _reference_kind(r) == kind and r.get(reference_x) is not None
        ]
        if known and chosen:
            series.append(
                {
                    "name": name,
                    "x": [r[reference_x] for r in chosen],
                    "y": [r["wmdp"] for r in chosen],
                    "x_error": None,
                    "y_error": None,
                    "text": [f"n {r['n']}, c {r['c']}" if r["n"] else name for r in chosen],
                    "symbol": symbol,
                }
            )
    note = "Bars: 95% Wilson intervals (accuracy), ± one SE over rows (loss added)."
    if result["reference"] and not known:
        note += (
            " The published points are on known questions and are not drawn on these "
            "all-question axes."
        )
    titles = {"loss_added": "loss added (nats)"}
    return {
        "series": series,
        "x_title": titles.get(x_key, x_key.replace("_", " ")),
        "y_title": y_key.replace("_", " "),
        "note": note,
    }

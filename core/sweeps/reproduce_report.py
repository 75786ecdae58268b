"""The reproduction's report: ours beside the paper's numbers, each with its interval and n,
and SAEBench's 16 configurations (`core.sweeps.reproduce` measures them)."""

from __future__ import annotations

import math
from pathlib import Path

from core.base.records import write_atomic, write_json
from core.evaluation.metrics import unscored_reason
from core.sweeps.references import PAPER_TOP_FEATURES
from core.sweeps.reproduce import MEASURES, PAPER_KNOWN, PAPER_LOSS_ROWS, PAPER_THRESHOLD, Z95


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    return f"{value:+.{digits}f}" if digits == 4 else f"{value:.{digits}f}"


def _cell(check: dict, digits: int = 3) -> tuple[str, str, str, str, str]:
    interval, tolerance = check["interval"], check["tolerance"]
    shown = "—" if interval is None else f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    paper = _number(check["reference"], digits)
    if check["reference_se"] is not None:
        paper += f" (SE {check['reference_se']:.{digits}f})"
    allowed = "—" if tolerance is None else f"±{tolerance:.{digits}f}"
    verdict = {True: "yes", False: "**no**", None: "not measured"}[check["within"]]
    return paper, _number(check["ours"], digits), shown, allowed, verdict


def _with_interval(point: dict, metric: str, spread: str, n: str | None) -> str:
    """A grid cell: the number, its 95% interval (or ± 1.96 SE) and its n."""
    value = point.get(metric)
    if value is None:
        return "not measured"
    digits = 4 if metric == "loss_added" else 3
    low_high = point.get(spread)
    if isinstance(low_high, (int, float)):
        low_high = (value - Z95 * low_high, value + Z95 * low_high)
    shown = _number(value, digits)
    if low_high is not None:
        shown += f" [{low_high[0]:.{digits}f}, {low_high[1]:.{digits}f}]"
    return shown + f" (n {point.get(n or 'loss_rows')})"


def _top_features_lines(top: dict | None, reference: str) -> list[str]:
    if top is None and reference in PAPER_TOP_FEATURES:
        return ["- Top-10 features: not compared (no n = 10 point was measured)."]
    if top is None:
        return [f"- Top-10 features: METHOD §8 lists none for `{reference}` (it lists L7's)."]
    return [
        f"- Top-10 features at threshold {PAPER_THRESHOLD} (authors' counting): "
        f"{top['shared']} of 10 shared with METHOD §8's list. Paper: {top['paper']}; "
        f"ours: {top['ours']}."
    ]


def report_markdown(result: dict) -> str:
    """The report a GPU user reads: ours beside the paper's and SAEBench's protocol."""
    prov = result["provenance"]
    ours = result["paper"][0]["known"] if result["paper"] else {}
    lines = [
        f"# Reproduction of the paper's table: {result['workspace']}",
        "",
        "- Verdict: "
        + (
            "**reproduced**: every paper number is within sampling error of ours"
            if result["reproduced"]
            else "**NOT reproduced**: a paper number differs from ours by more than the "
            "sampling error of both, or ours could not be measured"
        ),
        f"- Reference: METHOD §8 numbers of `{result['reference']}` (known questions: "
        f"{PAPER_KNOWN['wmdp']} WMDP, {PAPER_KNOWN['mmlu']} MMLU-4; loss on "
        f"{PAPER_LOSS_ROWS} rows; ours: {ours.get('wmdp')} WMDP, {ours.get('mmlu')} MMLU-4)",
        *_top_features_lines(result.get("top_features"), result["reference"]),
        f"- Device: {result['device']}; time taken: {result['seconds'] / 60:.1f} min",
        f"- Settings: {result['settings']}",
    ]
    lines += [f"- {key}: {value}" for key, value in prov.items() if isinstance(value, str)]
    lines += [
        "",
        "## The paper's points (retain threshold 0.01, authors' counting, BOS edited)",
        "",
        "A paper number is consistent with ours when the two differ by at most 1.96 standard "
        "errors of their difference (ours and the paper's own, from its n).",
        "",
        "| n | c | measure | paper | ours | our 95% interval | allowed difference | consistent? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["paper"]:
        for key, _, _ in MEASURES:
            digits = 4 if key == "loss_added" else 3
            cells = _cell(row[key], digits)
            lines.append(f"| {row['n']} | {row['c']} | {key} | " + " | ".join(cells) + " |")
    for point in result["not_run"]:
        what = "RMU" if point.get("rmu") else "DSG" if point.get("dsg") else "other"
        lines.append(
            f"| — | — | {what} (not run here) | WMDP {point['wmdp']}, MMLU {point['mmlu']} "
            "| — | — | — | — |"
        )
    saebench = result["saebench"]
    if saebench is None:
        lines += ["", "SAEBench's 16 configurations: not run (--skip-saebench)."]
        return "\n".join(lines) + "\n"
    score = _number(saebench["score"])
    if saebench["score"] is None:
        score += f" ({unscored_reason(saebench['points'])})"
    lines += [
        "",
        "## SAEBench's 16 configurations (BOS not counted, not edited)",
        "",
        f"SAEBench score (best of 16 on the same questions, optimistic): "
        f"{score}. SAEBench's published score for this SAE is not stored here: compare by hand.",
        "Each cell: ours, its 95% interval (loss: ± 1.96 SE) and its n (questions or rows).",
        "",
        "| threshold | n | c | WMDP (known) | MMLU (known) | loss added |",
        "|---|---|---|---|---|---|",
    ]
    for point in saebench["points"]:
        cells = (
            _with_interval(point, "wmdp_known_accuracy", "wmdp_known_accuracy_ci", "wmdp_known_n"),
            _with_interval(point, "mmlu_known_accuracy", "mmlu_known_accuracy_ci", "mmlu_known_n"),
            _with_interval(point, "loss_added", "loss_added_se", None),
        )
        lines.append(
            f"| {point['threshold']} | {point['n']} | {point['c']:g} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_report(result: dict, path: Path) -> Path:
    text = report_markdown(result).encode()
    write_atomic(path, lambda handle: handle.write(text))
    write_json(path.with_suffix(".json"), result, indent=2)
    return path

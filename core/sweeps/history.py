"""The run history of a workspace: every evaluation memoised under `evals/` and every sweep
kept under `sweeps/`, newest first, each with its settings, headline numbers with their
intervals and, for an evaluation, its look at the questions (core.evaluation.protocol's
ledger, read without counting a look); two of them compared side by side, paired on the
questions they share; and the settings a run was made with, as the intervention page
reads them from its URL.

    found = run_history(ws, store)
    found.runs[0].headline, found.notices  # a damaged memo: skipped with a one-line notice
    comparison_rows(found.get("run-0123"), found.get("run-4567"))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.base.records import DAMAGE, read_json
from core.base.uncertainty import mcnemar_exact, paired_drop_interval
from core.errors import UserError
from core.evaluation.evaluator import RESULT_FIELDS, RESULT_VERSION
from core.evaluation.protocol import LookLedger
from core.evaluation.report_rows import format_accuracy, format_loss_added, format_score
from core.evaluation.settings import FORGET, SET_NAMES, SIDE
from core.labels.store import LabelStore
from core.sweeps.run import SWEEP_FIELDS, SWEEP_VERSION, sweep_folder
from core.workspace.workspace import Workspace

EVALUATION, SWEEP = "evaluation", "sweep"
ACCURACIES = (("WMDP-bio", "wmdp"), ("MMLU", "mmlu"))


@dataclass(frozen=True)
class Run:
    """One kept evaluation or sweep, as the history lists it.

    Args:
        key: the memo's file name without ".json" ("run-…" or "sweep-…").
        kind: EVALUATION or SWEEP.
        created_at: when it was measured (UTC, ISO 8601); "" when the memo predates it.
        features: the features edited (a sweep: none; it selects its own per point).
        set_name: the saved set with exactly these features, if any.
        method, c, gate, split: how the features were edited and on which questions.
        n: questions scored per set (WMDP-bio, MMLU).
        headline: measure → value with its interval, as text.
        looks: the look stamp of an evaluation (protocol.LookLedger); None if never shown.
        record: the memo itself.
    """

    key: str
    kind: str
    created_at: str
    features: tuple[int, ...]
    set_name: str | None
    method: str
    c: str
    gate: str
    split: str
    n: dict[str, int]
    headline: dict[str, str]
    looks: dict | None
    record: dict = field(repr=False, compare=False)

    def row(self) -> dict:
        """The run as one row of the history's table."""
        features = ", ".join(map(str, self.features[:12])) + " …" * (len(self.features) > 12)
        named = f"{self.set_name}: {features}" if self.set_name else features
        return {
            "run": self.key,
            "kind": self.kind,
            "when": self.created_at.replace("T", " ")[:19],
            "features": named or "selected per point",
            "method": self.method,
            "c": self.c,
            "gate": self.gate,
            "split": self.split,
            "n": ", ".join(f"{name} {n}" for name, n in self.n.items()),
            **self.headline,
            "look": describe_look(self.looks),
        }


@dataclass(frozen=True)
class History:
    runs: list[Run]
    notices: list[str]  # one line per memo that could not be read

    def get(self, key: str) -> Run:
        """The run of this key (a unique beginning of it is enough)."""
        if not key.strip():
            raise UserError("Give a run's key (or its start): see `python -m core runs`.")
        found = [run for run in self.runs if run.key.startswith(key) or run.key == f"run-{key}"]
        if len(found) != 1:
            said = "no run" if not found else f"{len(found)} runs"
            raise UserError(f"{said} of this workspace is '{key}': see `python -m core runs`.")
        return found[0]


def describe_look(looks: dict | None) -> str:
    if not looks:
        return "not shown yet"
    if looks.get("split") == "selection":
        return f"selection run {looks['selection_run']}"
    return (
        f"report look {looks['report_look']} (after {looks['selection_runs_before']} "
        "selection runs)"
    )


def run_history(ws: Workspace, store: LabelStore | None = None) -> History:
    """Every evaluation and sweep kept in the workspace's folder, newest first. A memo that
    cannot be read is left where it is and named in `notices`, one line each."""
    sets = {}
    if store is not None:
        for name in store.set_names():
            sets.setdefault(tuple(sorted(store.get_set(name).features)), name)
    ledger = LookLedger(ws.folder)
    runs, notices = [], []
    memos = [(EVALUATION, path) for path in sorted((ws.folder / "evals").glob("run-*.json"))]
    memos += [(SWEEP, path) for path in sorted(sweep_folder(ws).glob("sweep-*.json"))]
    for kind, path in memos:
        fields, version = (
            (RESULT_FIELDS, RESULT_VERSION) if kind == EVALUATION else (SWEEP_FIELDS, SWEEP_VERSION)
        )
        memo, problem = _read(path, fields, version)
        if problem:
            notices.append(f"skipped {path.name}: {problem}")
            continue
        try:
            run = (
                _evaluation(path, memo, sets, ledger) if kind == EVALUATION else _sweep(path, memo)
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            notices.append(f"skipped {path.name}: a field is missing or malformed ({exc!r})")
            continue
        runs.append(run)
    runs.sort(key=lambda run: run.created_at, reverse=True)
    return History(runs, notices)


def _read(path: Path, fields: dict, version: int) -> tuple[dict, str | None]:
    """The memo and what is wrong with it, if anything; the file is only read (a listing
    never moves a memo: the evaluator does that when it next needs it)."""
    try:
        memo = read_json(path)
    except FileNotFoundError:
        return {}, "removed while listing"
    except DAMAGE as exc:
        return {}, f"unreadable ({' '.join(str(exc).split())[:80]})"
    if not isinstance(memo, dict):
        return {}, f"a {type(memo).__name__}, not a result"
    if missing := [name for name, kind in fields.items() if not isinstance(memo.get(name), kind)]:
        return {}, f"no valid {', '.join(missing)}"
    if memo.get("version") != version:
        return {}, f"version {memo.get('version')!r}, not {version}"
    return memo, None


def c_text(values: Sequence[float], multiplier: float) -> str:
    """The c a run clamped to: one value, or the range of its features' values."""
    effective = sorted(v * multiplier for v in values)
    if not effective:
        return ""
    if math.isclose(effective[0], effective[-1]):
        return f"{effective[0]:g}"
    return f"{effective[0]:g}–{effective[-1]:g}"


def _gate_of(gate: dict | None) -> str:
    if not gate:
        return "off"
    percentile = gate.get("calibration", {}).get("percentile")
    at = f"{percentile:g}th pct" if isinstance(percentile, int | float) else "kept"
    return f"{at}, alpha {gate['alpha']:.3g}, {gate['rule']}"


def _headline(metrics: dict) -> dict[str, str]:
    """WMDP-bio and MMLU accuracy after the edit (known questions when measured, else all)
    with their 95% Wilson intervals, and the loss added on general text ± its SE."""
    out = {}
    for name, prefix in ACCURACIES:
        which = "known" if metrics.get(f"{prefix}_known_accuracy") is not None else "all"
        key = f"{prefix}_{which}"
        out[f"{name} ({which})"] = format_accuracy(
            metrics.get(f"{key}_accuracy"), metrics.get(f"{key}_accuracy_ci")
        )
    out["loss added"] = format_loss_added(
        metrics["loss_added"], metrics.get("loss_added_se"), metrics.get("general_loss_rows", 0)
    )
    return out


def _evaluation(path: Path, memo: dict, sets: dict, ledger: LookLedger) -> Run:
    iv, settings = memo["intervention"], memo["provenance"].get("settings", {})
    features = tuple(int(f) for f in iv["features"])
    counts = memo["provenance"].get("questions", {})
    _correct(memo)  # the questions a comparison pairs on, each whole
    return Run(
        key=path.stem,
        kind=EVALUATION,
        created_at=memo["created_at"],
        features=features,
        set_name=sets.get(tuple(sorted(features))),
        method=iv["method"],
        c=c_text(iv["values"], iv.get("multiplier", 1.0)),
        gate=_gate_of(iv.get("gate")),
        split=settings.get("split", "?"),
        n={SET_NAMES[role]: int(counts.get(role, 0)) for role in (FORGET, SIDE)},
        headline=_headline(memo["metrics"]),
        looks=ledger.stamp(path.stem),
        record=memo,
    )


def _sweep(path: Path, memo: dict) -> Run:
    config, counts, points = memo["config"], memo["provenance"].get("questions", {}), memo["points"]
    gates = ", ".join("off" if g is None else f"{g:g}" for g in config.get("gates", [None]))
    headline = {
        "points": str(len(points)),
        "thresholds × n": f"{config['thresholds']} × {config['ns']}",
        "SAEBench score (optimistic)": format_score(memo["saebench_score"], points),
    }
    if memo["questions"] == "report":
        headline["held-out score"] = format_score(memo["held_out_score"], points, True)
    created_at = memo.get("created_at", "")
    if not isinstance(created_at, str):  # the history is sorted by it
        raise TypeError(f"created_at {created_at!r} is not a date")
    return Run(
        key=path.stem,
        kind=SWEEP,
        created_at=created_at,
        features=(),
        set_name=None,
        method=config.get("method", "clamp"),
        c=", ".join(f"{c:g}" for c in config["cs"]),
        gate=gates,
        split=memo["questions"],
        n={SET_NAMES[role]: int(counts.get(role, 0)) for role in (FORGET, SIDE)},
        headline=headline,
        looks=None,
        record=memo,
    )


# -- comparing two ------------------------------------------------------------------------


def _correct(memo: dict) -> dict[str, dict[tuple, bool]]:
    """Per question set, each question (by its content) → right after the edit."""
    found: dict[str, dict[tuple, bool]] = {FORGET: {}, SIDE: {}}
    for q in memo["questions"]:
        after = q["after"]
        right = max(range(len(after)), key=after.__getitem__) == q["answer"]
        found[q["set"]][(q["question"], tuple(q["choices"]), q["answer"])] = right
    return found


def paired_rows(a: Run, b: Run) -> list[dict]:
    """Per question set, B's accuracy minus A's on the questions both scored: n, the
    difference with its exact 95% interval, the questions that flipped each way and
    McNemar's exact p. A set the two share no question of says so."""
    rows = []
    right_a, right_b = _correct(a.record), _correct(b.record)
    for role in (FORGET, SIDE):
        shared = right_a[role].keys() & right_b[role].keys()
        name, n = SET_NAMES[role], len(shared)
        if not n:
            rows.append({"measure": f"{name} accuracy, B − A", "n": 0, "difference": "not "
                         "paired: the runs share no question"})  # fmt: skip
            continue
        lost = sum(right_a[role][q] and not right_b[role][q] for q in shared)
        gained = sum(right_b[role][q] and not right_a[role][q] for q in shared)
        low, high = paired_drop_interval(lost, gained, n)  # of A − B
        same = n == len(right_a[role]) == len(right_b[role])
        rows.append(
            {
                "measure": f"{name} accuracy, B − A" + ("" if same else " (shared questions)"),
                "n": n,
                "difference": f"{100 * (gained - lost) / n:+.1f} pts [{-100 * high:+.1f}, "
                f"{-100 * low:+.1f}]",
                "flips": f"{lost} right→wrong, {gained} wrong→right",
                "test": f"McNemar exact p = {mcnemar_exact(lost, gained):.3g}",
            }
        )
    ma, mb = a.record["metrics"], b.record["metrics"]
    se = [ma.get("loss_added_se"), mb.get("loss_added_se")]
    spread = math.hypot(*se) if None not in se else None
    difference = mb["loss_added"] - ma["loss_added"]
    rows.append(
        {
            "measure": "loss added, B − A (not paired: row losses are not kept)",
            "n": min(ma.get("general_loss_rows", 0), mb.get("general_loss_rows", 0)),
            "difference": f"{difference:+.4f}"
            + ("" if spread is None else f" ± {spread:.4f} (SE, unpaired)"),
        }
    )
    return rows


def side_by_side(a: Run, b: Run) -> list[dict]:
    """Each field of the two runs' rows, A beside B."""
    first, second = a.row(), b.row()
    return [
        {"field": name, "A": str(first.get(name, "")), "B": str(second.get(name, ""))}
        for name in dict.fromkeys([*first, *second])
    ]


def restore_params(run: Run) -> dict[str, str]:
    """The intervention page's URL parameters that set up `run` again: its features (its
    set, or the search page's selection when it has none: `features`), method, c, the
    global multiplier, the BOS rule, gate and scoring. An evaluation only."""
    if run.kind != EVALUATION:
        raise UserError(f"{run.key} is a sweep: open one of its points (an evaluation).")
    iv, settings = run.record["intervention"], run.record["provenance"].get("settings", {})
    values = iv["values"]
    params = {
        "method": iv["method"],
        "multiplier": f"{iv.get('multiplier', 1.0):g}",
        "skip_bos": str(bool(iv.get("skip_bos", True))),
        "gate": str(bool(iv.get("gate"))),
        **({"set": run.set_name, "source": "set"} if run.set_name else {"source": "search"}),
        "features": ",".join(map(str, run.features)),
    }
    if values and all(math.isclose(v, values[0]) for v in values):
        params["c"] = f"{values[0]:g}"
    if gate := iv.get("gate"):
        calibration = gate.get("calibration", {})
        params["gate_rule"] = gate["rule"]
        if isinstance(calibration.get("percentile"), int | float):
            params["gate_percentile"] = f"{calibration['percentile']:g}"
        if isinstance(calibration.get("on"), str):
            params["gate_calibration"] = calibration["on"]
    for name in ("scoring", "loss_rows", "shots"):
        if name in settings:
            params[name] = str(settings[name])
    if "question_limit" in settings:
        params["questions"] = str(settings["question_limit"] or 0)
    return params

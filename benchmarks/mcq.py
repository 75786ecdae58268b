"""Multiple-choice scoring speed and the known-question filter with prefix reuse.

    python benchmarks/mcq.py [--workspace offline-gemma3-270m] [--questions 16] [--threads 2]

On the first N forget questions, in one run: the known-question filter (all 24 orderings of
each question, in chunks of questions as build_known runs them) (a) with prefix reuse (token
trees: stems once as a KV cache, bodies with tree attention), (b) the 24 prompts scored
batched without reuse, (c) the 24 prompts scored independently, one forward pass each;
seconds per question, the speed-up of (a) over (b) and (c) (target ≥ 3× over independent
prompts) and whether the predictions are identical. Then MCQ throughput (letter scoring,
original order, questions/s) against a bare batched forward of the same prompts in the same
batches (target ≥ 0.8×), and against a full forward that computes logits at every position.
Model load and one warm-up of each path are excluded from the timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.base.environment import configure_environment
from core.evaluation.known import QUESTIONS_PER_CALL, permutation_correct
from core.evaluation.mcq import PERMUTATIONS, Scorer
from core.loading.data import Question
from core.runtime.forward import batches, final_resid, pad_right
from core.runtime.prefix_tree import TreeRows, tree_resid
from core.workspace.workspace import Workspace


def load_average() -> str:
    """1-minute load average: other processes on the machine slow every path."""
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def orderings(scorer: Scorer, question: Question) -> list[list[int]]:
    return [scorer.encode(question, order) for order in PERMUTATIONS]


def independent(scorer: Scorer, question: Question) -> tuple[np.ndarray, np.ndarray]:
    """(c): each of the 24 prompts in its own forward pass; ([24] correct, [24, 4] probs)."""
    probs = np.concatenate([scorer.score_sequences([seq]) for seq in orderings(scorer, question)])
    answers = np.array([order.index(question.answer) for order in PERMUTATIONS])
    return probs.argmax(axis=1) == answers, probs


def tree_probs(scorer: Scorer, questions: list[Question]) -> np.ndarray:
    """[n, 24, 4] letter probabilities of the tree path (untimed, to compare predictions)."""
    sequences = [seq for q in questions for seq in orderings(scorer, q)]
    resid = tree_resid(scorer.model, sequences, scorer.pad)
    return scorer.scores_from_resid(resid, sequences).reshape(len(questions), 24, 4)


def token_counts(sequences: list[list[int]]) -> tuple[int, int, int]:
    """(distinct prefixes of the trie, tokens the tree path runs (stems and bodies), the same
    with the batches' padding)."""
    distinct = len({tuple(seq[: i + 1]) for seq in sequences for i in range(len(seq))})
    layout = TreeRows.build(sequences)
    stems = [len(stem) for stem in layout.stems]
    bodies = [len(body) for body in layout.tokens]
    padded = sum(len(g) * stems[g[0]] for g in batches(stems) if stems[g[0]])
    totals = [stems[s] + b for s, b in zip(layout.stem_of, bodies, strict=True)]
    padded += sum(len(g) * max(bodies[r] for r in g) for g in batches(totals))
    return distinct, sum(stems) + sum(bodies), padded


@torch.no_grad()
def known_filter(scorer: Scorer, questions: list[Question]) -> dict:
    """The three paths on chunks of questions as build_known passes them, interleaved chunk by
    chunk so that load drifts hit all alike."""
    chunks = [
        questions[i : i + QUESTIONS_PER_CALL] for i in range(0, len(questions), QUESTIONS_PER_CALL)
    ]
    permutation_correct(scorer, chunks[0], reuse_prefix=True)  # warm-up of each path
    permutation_correct(scorer, chunks[0], reuse_prefix=False)
    independent(scorer, questions[0])
    seconds = {"a": 0.0, "b": 0.0, "c": 0.0}
    identical = {"a=b": True, "a=c": True, "letters a=c": True}
    max_diff = 0.0
    tokens = np.zeros(4)  # full prompts, distinct in the trie, in tree rows, padded rows
    right = known = 0
    for chunk in chunks:
        a, took = timed(lambda q=chunk: permutation_correct(scorer, q, reuse_prefix=True))
        seconds["a"] += took
        b, took = timed(lambda q=chunk: permutation_correct(scorer, q, reuse_prefix=False))
        seconds["b"] += took
        c_pairs, took = timed(lambda q=chunk: [independent(scorer, question) for question in q])
        seconds["c"] += took
        c = np.array([pair[0] for pair in c_pairs])
        c_probs = np.array([pair[1] for pair in c_pairs])
        identical["a=b"] &= bool(np.array_equal(a, b))
        identical["a=c"] &= bool(np.array_equal(a, c))
        a_probs = tree_probs(scorer, chunk)
        identical["letters a=c"] &= bool(
            np.array_equal(a_probs.argmax(axis=2), c_probs.argmax(axis=2))
        )
        max_diff = max(max_diff, float(np.abs(a_probs - c_probs).max()))
        sequences = [seq for question in chunk for seq in orderings(scorer, question)]
        tokens += [sum(len(s) for s in sequences), *token_counts(sequences)]
        right += int(c.sum())
        known += int(c.all(axis=1).sum())
    n = len(questions)
    return {
        "n": n,
        "per_question": {k: v / n for k, v in seconds.items()},
        "identical": identical,
        "max_prob_diff": max_diff,
        "tokens_per_question": tokens / n,
        "right": right,
        "known": known,
    }


@torch.no_grad()
def throughput(ws: Workspace, scorer: Scorer, questions: list[Question], repeats: int) -> dict:
    model = ws.model
    prompts = [scorer.encode(q) for q in questions]
    groups = batches([len(p) for p in prompts])
    padded = [pad_right([prompts[i] for i in group], scorer.pad) for group in groups]

    def score() -> None:
        scorer.score(questions)

    def bare() -> None:
        for tokens, mask in padded:
            final_resid(model, tokens, mask)

    def full() -> None:
        for tokens, mask in padded:
            model(tokens.to(model.cfg.device), attention_mask=mask.to(model.cfg.device))

    paths = {"score": score, "bare": bare}
    for fn in paths.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):  # interleaved, so load drifts hit both alike
        for name, fn in paths.items():
            times[name].append(timed(fn)[1])
    full()  # warm-up; a reference only (a [b, pos, 262k] logits tensor), timed once
    times["full"] = [timed(full)[1]]
    n = len(questions)
    return {
        "n": n,
        "batches": len(groups),
        "tokens": sum(len(p) for p in prompts),
        "padded_tokens": sum(tokens.numel() for tokens, _ in padded),
        "q_s": {name: n / float(np.median(t)) for name, t in times.items()},
        "range": {name: (n / max(t), n / min(t)) for name, t in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--questions", type=int, default=16, help="first N forget questions")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=5, help="throughput runs (median)")
    args = parser.parse_args()
    configure_environment()
    torch.set_num_threads(args.threads)
    ws = Workspace.open(args.workspace)
    questions = ws.questions("forget_questions")[: args.questions]
    scorer = Scorer(ws.model, ws.tokenizer, ws.config.model.chat_template, "letter")
    print(
        f"workspace {ws.name} | {ws.config.model.dtype} on {ws.device} | torch threads "
        f"{torch.get_num_threads()} | {len(questions)} forget questions | load average "
        f"{load_average()}"
    )

    known = known_filter(scorer, questions)
    per = known["per_question"]
    full, distinct, rows, padded = known["tokens_per_question"]
    print(
        f"\nknown-question filter, 24 orderings per question, {QUESTIONS_PER_CALL} questions per "
        f"call; tokens per question: {full:,.0f} in the prompts, {distinct:,.0f} distinct in "
        f"their trie, {rows:,.0f} run as trees ({padded:,.0f} with padding); {known['right']} of "
        f"{known['n'] * 24} orderings right, {known['known']} of {known['n']} questions known:"
    )
    print("| path | s / question | (a) speed-up |")
    print("|---|---|---|")
    labels = {
        "a": "(a) prefix reuse (token trees)",
        "b": "(b) 24 prompts batched, no reuse",
        "c": "(c) 24 prompts independently, one forward each",
    }
    for key, label in labels.items():
        print(f"| {label} | {per[key]:.3f} | {per[key] / per['a']:.2f}× |")
    over_c = per["c"] / per["a"]
    ident = known["identical"]
    print(
        f"target ≥ 3× over (c): {'met' if over_c >= 3 else 'NOT met'} ({over_c:.2f}×); "
        f"over (b): {per['b'] / per['a']:.2f}×"
    )
    print(
        f"identical correctness a=b: {ident['a=b']}, a=c: {ident['a=c']}; identical predicted "
        f"letters a=c: {ident['letters a=c']}; max |Δ letter prob| a vs c "
        f"{known['max_prob_diff']:.2e}"
    )

    result = throughput(ws, scorer, questions, args.repeats)
    q_s = result["q_s"]
    print(
        f"\nMCQ throughput, {result['n']} prompts ({result['tokens']:,} tokens, "
        f"{result['padded_tokens']:,} padded) in {result['batches']} batch(es), median of "
        f"{args.repeats} (full forward: one run):"
    )
    print("| path | questions/s | slowest–fastest run | ratio to bare |")
    print("|---|---|---|---|")
    rows = {
        "score": "Scorer.score (letter scoring)",
        "bare": "bare batched forward (final_resid)",
        "full": "full forward, logits at every position",
    }
    for key, label in rows.items():
        low, high = result["range"][key]
        spread = f"{low:.2f}–{high:.2f}"
        print(f"| {label} | {q_s[key]:.2f} | {spread} | {q_s[key] / q_s['bare']:.2f} |")
    ratio = q_s["score"] / q_s["bare"]
    print(f"target ≥ 0.8× bare: {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f}×)")
    ok = ident["a=b"] and ident["a=c"]
    print(f"\npredictions identical across (a), (b), (c): {ok} | load average {load_average()}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The METHOD §6 prompt strings, plain and chat, and SAEBench's known-question rules, on
crafted questions."""

import copy

import numpy as np
import pytest

from core.evaluation.known import KnownSet, has_tricks
from core.evaluation.mcq import encode_prompt, prompt_text
from core.loading.data import Question
from core.workspace.workspace import Workspace

QUESTION = Question(
    "Which organelle makes ATP?", ("Nucleus", "Mitochondrion", "Golgi", "Ribosome"), 1, "biology"
)
GEMMA_CHAT = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)


def test_plain_prompt_is_method_6_word_for_word():
    assert prompt_text(QUESTION) == (
        "The following are multiple choice questions (with answers) about biology.\n"
        "Which organelle makes ATP?\n"
        "A. Nucleus\nB. Mitochondrion\nC. Golgi\nD. Ribosome\nAnswer:"
    )
    assert prompt_text(QUESTION, (3, 2, 1, 0)).endswith(
        "A. Ribosome\nB. Golgi\nC. Mitochondrion\nD. Nucleus\nAnswer:"
    )
    mmlu = Question("Q?", ("a", "b", "c", "d"), 0, "high_school_us_history")
    assert prompt_text(mmlu).startswith(
        "The following are multiple choice questions (with answers) about high school us history.\n"
    )


def test_without_the_question_only_the_choices_remain_as_in_saebench():
    assert prompt_text(QUESTION, with_question=False) == (
        "A. Nucleus\nB. Mitochondrion\nC. Golgi\nD. Ribosome\nAnswer:"
    )


def test_chat_prompt_is_saebench_gemma_format_with_one_bos():
    tokenizer = copy.copy(Workspace.open("offline-gemma3-270m").tokenizer)  # no model load
    tokenizer.chat_template = GEMMA_CHAT
    ids = encode_prompt(tokenizer, prompt_text(QUESTION), chat=True)
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids) == (
        "<bos><start_of_turn>user\n"
        "The following are multiple choice questions (with answers) about biology.\n"
        "Which organelle makes ATP?\n"
        "A. Nucleus\nB. Mitochondrion\nC. Golgi\nD. Ribosome<end_of_turn>\n"
        "<start_of_turn>model\nAnswer: ("
    )
    plain = encode_prompt(tokenizer, prompt_text(QUESTION), chat=False)
    assert tokenizer.decode(plain) == "<bos>" + prompt_text(QUESTION)


def _question(*choices: str) -> Question:
    return Question("Q?", choices, 0, "biology")


@pytest.mark.parametrize(
    ("choices", "tricky"),
    [
        (("All of the above", "b", "c", "d"), True),
        (("a", "A and B", "c", "d"), True),
        (("a", "b", "A & C", "d"), True),
        (("a", "b", "c", "Both B and D"), True),
        (("None of the above", "b", "c", "d"), False),  # SAEBench keeps these
        (("all of the above", "b", "c", "d"), False),  # exact text only
        (("a", "A and B and C", "c", "d"), False),
        (("a", "A, B", "c", "d"), False),
        (("Apples and oranges", "b", "c", "d"), False),
    ],
    ids=[
        "all-of-the-above",
        "and",
        "ampersand",
        "both",
        "none-of-the-above",
        "lowercase",
        "three-letters",
        "comma",
        "words",
    ],
)
def test_no_tricks_is_saebench_rule(choices, tricky):
    assert has_tricks(_question(*choices)) is tricky


def test_known_variants_keep_what_saebench_keeps():
    questions = [_question("a", "b", "c", "d"), _question("All of the above", "b", "c", "d")] * 2
    right = np.array([24, 24, 23, 24])
    without = np.array([24, 0, 0, 10])
    known = KnownSet(questions, right, without, {})
    assert known.indices("correct").tolist() == [0, 1, 3]
    assert known.indices("correct-iff-question").tolist() == [1, 3]
    assert known.indices("correct-no-tricks").tolist() == [0]


def test_k_shot_prompt_puts_solved_examples_between_the_lead_and_the_question():
    first = Question("Where is DNA kept?", ("Nucleus", "Golgi", "Vacuole", "Wall"), 0, "biology")
    second = Question("What makes proteins?", ("Lipid", "Ribosome", "Sugar", "Salt"), 1, "biology")
    assert prompt_text(QUESTION, shots=[first, second]) == (
        "The following are multiple choice questions (with answers) about biology.\n\n"
        "Where is DNA kept?\nA. Nucleus\nB. Golgi\nC. Vacuole\nD. Wall\nAnswer: A\n\n"
        "What makes proteins?\nA. Lipid\nB. Ribosome\nC. Sugar\nD. Salt\nAnswer: B\n\n"
        "Which organelle makes ATP?\n"
        "A. Nucleus\nB. Mitochondrion\nC. Golgi\nD. Ribosome\nAnswer:"
    )
    assert prompt_text(QUESTION, shots=()) == prompt_text(QUESTION)  # k = 0 is unchanged

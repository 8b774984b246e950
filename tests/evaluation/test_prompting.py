"""Benchmark problems are asked in the loop's solver format and never leak the hidden answer."""

from __future__ import annotations

import ast

from azr.core.prompts import R1_INSTRUCTION
from services.evaluation.datasets import Bench, load_bench
from services.evaluation.grading import gold_answer, grade_request, humaneval_program
from services.evaluation.prompting import as_task, build_prompt, doctest_pairs, parse


def test_cruxeval_o_prompt_shows_input_not_output() -> None:
    p = load_bench(Bench.CRUXEVAL_O)[0]
    prompt = build_prompt(p).text
    assert prompt.startswith(R1_INSTRUCTION)
    assert prompt.rstrip().endswith("<think>")
    assert p.program in prompt and p.input in prompt
    assert p.output not in prompt


def test_cruxeval_i_prompt_shows_output_not_input() -> None:
    p = load_bench(Bench.CRUXEVAL_I)[1]
    prompt = build_prompt(p).text
    assert p.output in prompt
    assert f"```input\n{p.input}" not in prompt


def test_prefill_is_part_of_the_parsed_answer() -> None:
    p = load_bench(Bench.CRUXEVAL_O)[0]
    rendered = build_prompt(p, prefill=True)
    assert rendered.text.endswith("```output\n") and rendered.text.endswith(rendered.prefill)
    answer = parse(p, p.output + "\n```\n</answer>", prefill=rendered.prefill)
    assert answer.value == p.output
    assert answer.format_ok


def test_humaneval_task_shows_docstring_examples() -> None:
    p = load_bench(Bench.HUMANEVAL)[0]
    pairs = doctest_pairs(p)
    assert pairs == [
        ("[1.0, 2.0, 3.0], 0.5", "False"),
        ("[1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3", "True"),
    ]
    task = as_task(p)
    assert task.visible_pairs() == pairs
    prompt = build_prompt(p).text
    assert "has_close_elements" in prompt
    assert p.program.strip() not in prompt  # the canonical solution never appears


def test_humaneval_answer_named_f_is_renamed_to_the_entry_point() -> None:
    p = load_bench(Bench.HUMANEVAL)[2]  # truncate_number
    answer = parse(
        p,
        " ok </think>\n<answer>\n```python\ndef f(number):\n    return number % 1.0\n```\n</answer>",
    )
    assert answer.format_ok
    program = humaneval_program(p, answer.value)
    tree = ast.parse(program)
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    # stub, renamed candidate, the tests' check, the wrapper f
    assert names == [p.entry_point, p.entry_point, "check", "f"]
    assert f"_eval_candidate = {p.entry_point}" in program


def test_grade_requests_carry_the_gold_value() -> None:
    o = load_bench(Bench.CRUXEVAL_O)[3]
    req = grade_request(o, "'x'")
    assert req.route == "verify" and req.item["output"] == o.output and req.item["answer"] == "'x'"
    i = load_bench(Bench.CRUXEVAL_I)[3]
    req = grade_request(i, gold_answer(i))
    assert req.item["task_type"] == "abduction" and req.item["answer"] == i.input
    h = load_bench(Bench.HUMANEVAL)[3]
    assert grade_request(h, "x").route == "run"

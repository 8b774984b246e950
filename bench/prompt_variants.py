"""Which prompt profile a small model follows: a fixed probe set, several prompt variants, numbers.

The probe set is built deterministically from templates (``x + k``, ``xs[::-1]``, ``sum(xs) + k``,
``s.upper()``, ...); its gold outputs come from the project's executor (the sandbox engine's
``validate``). It is a yardstick for prompts only: not training data, not a benchmark.

For every variant (a prompt profile, optionally the paper's fenced answer prefill) and every
temperature (greedy, 0.5, 1.0) the real model answers every probe task through the inference
service's own renderer and the core's parsers, and the executor checks the answers:

- solver roles: well-formed rate (the profile's parser accepts the answer and it is a literal /
  a literal argument list / a program defining ``f``), copy rate (the answer equals a literal the
  prompt shows: the input, the output, a constant of the program, an example), solve rate
  (well-formed and verified correct);
- proposer roles: well-formed rate, copy rate (the program of a reference or an example, or an
  example's inputs) and valid-proposal rate (well-formed and validated by the executor).

Usage: ``python bench/prompt_variants.py [--out docs/results-data/prompt-variants]``. Cost is
dominated by prompt prefill on CPU: on the shared 2-core machine (load average 8-12) one cell (a
variant at one temperature, defaults below) took 10-20 minutes greedy and about twice that
sampled, so ``--cells`` runs a chosen subset (results are written after every cell) and
``--merge`` combines runs made in parallel processes; ``--tasks``/``--propose``/``--samples``
resize it.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azr.core import profiles  # noqa: E402
from azr.core.parsing import close_answer  # noqa: E402
from azr.core.profiles import PromptSpec  # noqa: E402
from azr.core.tasks import Role, Task, TaskType  # noqa: E402
from azr.core.verification import NotALiteral, literal_value  # noqa: E402
from services.inference.prompting import render_spec  # noqa: E402

OUT = ROOT / "docs" / "results-data" / "prompt-variants"

# name -> (profile, paper's fenced answer prefill)
VARIANTS: dict[str, tuple[str, bool]] = {
    "paper": ("paper", False),  # the settings' default before this comparison
    "paper+prefill": ("paper", True),  # what `make run` used (AZR_INFERENCE__ANSWER_PREFILL)
    "opener-think": ("opener-think", False),
    "opener": ("opener", False),
}
TEMPERATURES = (0.0, 0.5, 1.0)
INDUCTION_INPUTS = 6  # `make run`'s --induction-inputs
GENERIC_HINT = "Look at how each result follows from its input."

# ------------------------------------------------------------------------------- probe set

INT_PROGRAMS = [
    "def f(x):\n    return x + {k}",
    "def f(x):\n    return x * {k}",
    "def f(x):\n    return x - {k}",
    "def f(x):\n    return x * {k} + {c}",
    "def f(x):\n    return x // {k}",
    "def f(x):\n    return x % {k}",
    "def f(x):\n    return max(x, {big})",
]
LIST_PROGRAMS = [
    "def f(xs):\n    return xs[::-1]",
    "def f(xs):\n    return sum(xs) + {k}",
    "def f(xs):\n    return sorted(xs)",
    "def f(xs):\n    return len(xs) + {k}",
    "def f(xs):\n    return max(xs)",
    "def f(xs):\n    return [x * {k} for x in xs]",
    "def f(xs):\n    return xs[0] + xs[-1]",
]
STR_PROGRAMS = [
    "def f(s):\n    return s.upper()",
    "def f(s):\n    return s[::-1]",
    "def f(s):\n    return len(s)",
    "def f(s):\n    return s + '{w}'",
    "def f(s):\n    return s.replace('a', '{ch}')",
    "def f(s):\n    return s * 2",
    "def f(s):\n    return s[0]",
]
WORDS = ["apple", "banana", "cat", "data", "hello", "python", "zebra", "mango", "lava", "tree"]


def _program(rng: random.Random, template: str) -> str:
    return template.format(
        k=rng.randint(2, 9),
        c=rng.randint(1, 9),
        big=rng.randint(10, 20),
        w=rng.choice(["x", "ab", "!", "zz"]),
        ch=rng.choice(["o", "e", "u"]),
    )


def _input(rng: random.Random, template: str) -> str:
    if template in INT_PROGRAMS:
        return repr(rng.randint(0, 30))
    if template in LIST_PROGRAMS:
        return repr([rng.randint(0, 9) for _ in range(rng.randint(3, 5))])
    return repr(rng.choice(WORDS))


def draft_tasks(seed: int, count: int, n_inputs: int) -> list[tuple[str, list[str]]]:
    """``count`` (program, inputs) drafts, cycling through the templates in a seeded order."""
    rng = random.Random(seed)
    templates = INT_PROGRAMS + LIST_PROGRAMS + STR_PROGRAMS
    rng.shuffle(templates)
    drafts = []
    for i in range(count):
        template = templates[i % len(templates)]
        inputs: list[str] = []
        while len(inputs) < n_inputs:
            candidate = _input(rng, template)
            if candidate not in inputs or len(inputs) >= 3 * n_inputs:
                inputs.append(candidate)
        drafts.append((_program(rng, template), inputs))
    return drafts


def build_probe_set(executor: Any, n_tasks: int, n_propose: int) -> dict[str, Any]:
    """Probe tasks per task type, with gold outputs from the executor. A draft whose output equals
    its input (``max(x, 20)`` on 25) is dropped so the input cannot be a correct copy."""
    built: dict[str, list[Task]] = {}
    for k, task_type in enumerate(TaskType):
        n_inputs = INDUCTION_INPUTS if task_type is TaskType.INDUCTION else 1
        drafts = draft_tasks(1000 + k, 3 * n_tasks, n_inputs)
        results = executor.validate(
            [{"task_type": task_type.value, "program": p, "inputs": ins} for p, ins in drafts]
        )
        tasks: list[Task] = []
        for (program, inputs), res in zip(drafts, results, strict=True):
            if not res["valid"] or any(
                _same_literal(i, o) for i, o in zip(inputs, res["outputs"], strict=True)
            ):
                continue
            message = GENERIC_HINT if task_type is TaskType.INDUCTION else ""
            tasks.append(Task(task_type, program, tuple(inputs), tuple(res["outputs"]), message))
            if len(tasks) == n_tasks:
                break
        built[task_type.value] = tasks
    # Proposer prompts: deduction/abduction get two references, induction one program to probe.
    references = built["deduction"]
    propose = {
        task_type.value: [
            [references[(2 * j) % len(references)], references[(2 * j + 1) % len(references)]]
            if task_type is not TaskType.INDUCTION
            else [built["induction"][j % len(built["induction"])]]
            for j in range(n_propose)
        ]
        for task_type in TaskType
    }
    return {"solve": built, "propose": propose}


def _same_literal(a: str, b: str) -> bool:
    try:
        return bool(literal_value(a) == literal_value(b))
    except NotALiteral:
        return False


# ------------------------------------------------------------------------------- copy detection

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_PAPER_EXAMPLE_INPUTS = ["'racecar'", "'Level'", "''"]


def _norm_expr(text: str) -> str | None:
    try:
        return ast.dump(ast.parse(text.strip(), mode="eval"))
    except (SyntaxError, ValueError, RecursionError):
        return None


def _norm_args(text: str) -> str | None:
    return _norm_expr(f"_({text})")


def _norm_program(text: str) -> str | None:
    try:
        return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError):
        return None


def prompt_literals(spec: PromptSpec, task: Task | None) -> set[str]:
    """Normalised literals the prompt shows: fenced bodies, inline code spans, the task's inputs
    and outputs, and every constant of its program (as expressions and as argument lists)."""
    texts: list[str] = []
    texts += re.findall(r"```\w*\n(.*?)\n```", spec.task_text, flags=re.DOTALL)
    texts += _CODE_SPAN.findall(spec.task_text)
    if task is not None:
        texts += [*task.inputs, *task.outputs]
        try:
            tree = ast.parse(task.source)
            texts += [repr(n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)]
        except SyntaxError:
            pass
    found = set()
    for text in texts:
        for norm in (_norm_expr(text), _norm_args(text), _norm_program(text)):
            if norm is not None:
                found.add(norm)
    return found


def is_copy(task_type: TaskType, value: str, literals: set[str]) -> bool:
    if not value:
        return False
    if task_type is TaskType.DEDUCTION:
        norm = _norm_expr(value)
    elif task_type is TaskType.ABDUCTION:
        norm = _norm_args(value)
    else:
        norm = _norm_program(value)
    return norm is not None and norm in literals


def well_typed(task_type: TaskType, value: str) -> bool:
    """The same bar for every profile: a literal output, a literal argument list, a program."""
    if not value:
        return False
    if task_type is TaskType.DEDUCTION:
        return _same_literal(value, value)
    if task_type is TaskType.ABDUCTION:
        call = _norm_args(value)
        if call is None:
            return False
        node = ast.parse(f"_({value})", mode="eval").body
        assert isinstance(node, ast.Call)
        return all(_same_literal(ast.unparse(a), ast.unparse(a)) for a in node.args) and bool(
            node.args or node.keywords
        )
    return _norm_program(value) is not None and "def f(" in value


# ------------------------------------------------------------------------------- generation


@dataclass
class Job:
    variant: str
    temperature: float
    role: Role
    task_type: TaskType
    index: int
    spec: PromptSpec
    task: Task | None
    references: list[Task]
    text: str = ""
    max_tokens: int = 128


def max_tokens_for(profile: str, role: Role, task_type: TaskType, args: Any) -> int:
    if profile != "paper" and role is Role.SOLVE and task_type is not TaskType.INDUCTION:
        return int(args.line_tokens)
    return int(args.max_tokens)


def stop_for(job: Job, prefill: bool) -> tuple[str, ...]:
    """The stop strings the inference service would use for this request."""
    if job.spec.profile != "paper":
        return job.spec.stop
    if job.role is Role.SOLVE and prefill:
        return ("</answer>", "```")
    return ("</answer>",)


def generate(engine: Any, jobs: list[Job], temperature: float, samples: int, seed: int) -> None:
    from services.inference.engine import SamplingParams

    groups: dict[tuple[tuple[str, ...], int], list[Job]] = defaultdict(list)
    for job in jobs:
        groups[(job.spec.stop if job.spec.stop else _paper_stop(job), job.max_tokens)].append(job)
    for (stop, max_tokens), group in groups.items():
        params = SamplingParams(
            n=1 if temperature == 0.0 else samples,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            seed=seed,
        )
        t0 = time.perf_counter()
        out = asyncio.run(engine.generate_params([j.text for j in group], params))
        tokens = sum(len(x.completion_token_ids) for per in out for x in per)
        print(
            f"  {len(group)} prompts x {params.n}, stop {list(stop)!r}: {tokens} tokens "
            f"in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        for job, per_prompt in zip(group, out, strict=True):
            job.samples = per_prompt  # type: ignore[attr-defined]


def _paper_stop(job: Job) -> tuple[str, ...]:
    prefill = VARIANTS[job.variant][1]
    return stop_for(job, prefill)


# ------------------------------------------------------------------------------- scoring


def response_of(job: Job, text: str) -> str:
    """What the service hands the parser: prefill + generation, with a complete paper answer
    closed (`inference.close_answers`, on by default)."""
    response = job.spec.prefill + text
    n_inputs = INDUCTION_INPUTS
    at = profiles.complete_at(job.spec, job.task_type, job.role, response, n_inputs=n_inputs)
    return response if at is None else close_answer(response, at)


def score(jobs: list[Job], executor: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    verify_items: list[dict[str, Any]] = []
    verify_rows: list[dict[str, Any]] = []
    validate_items: list[dict[str, Any]] = []
    validate_rows: list[dict[str, Any]] = []
    for job in jobs:
        literals = prompt_literals(job.spec, job.task)
        for sample in job.samples:  # type: ignore[attr-defined]
            response = response_of(job, sample.text)
            row: dict[str, Any] = {
                "variant": job.variant,
                "temperature": job.temperature,
                "role": job.role.value,
                "task_type": job.task_type.value,
                "index": job.index,
                "response": response,
                "tokens": len(sample.completion_token_ids),
                "finish_reason": sample.finish_reason,
            }
            if job.role is Role.SOLVE:
                assert job.task is not None
                answer = profiles.parse_solve(job.spec, job.task_type, response)
                ok = answer.format_ok and well_typed(job.task_type, answer.value)
                row.update(
                    value=answer.value,
                    well_formed=ok,
                    copy=is_copy(job.task_type, answer.value, literals),
                    correct=False,
                )
                if ok:
                    verify_items.append(_verify_item(job.task, answer.value))
                    verify_rows.append(row)
            else:
                reference = job.references[0] if job.task_type is TaskType.INDUCTION else None
                proposal = profiles.parse_propose(
                    job.spec,
                    job.task_type,
                    response,
                    n_inputs=INDUCTION_INPUTS,
                    reference=reference,
                )
                ok = proposal.format_ok and proposal.parsed
                row.update(
                    program=proposal.program,
                    inputs=proposal.inputs,
                    message=proposal.message,
                    error=proposal.error,
                    well_formed=ok,
                    copy=_proposal_copy(job, proposal.program, proposal.inputs),
                    valid=False,
                )
                if ok and proposal.program is not None:
                    source = "\n".join([*proposal.imports, proposal.program])
                    validate_items.append(
                        {
                            "task_type": job.task_type.value,
                            "program": source,
                            "inputs": proposal.inputs,
                        }
                    )
                    validate_rows.append(row)
            rows.append(row)
    if verify_items:
        for row, res in zip(verify_rows, executor.verify(verify_items), strict=True):
            row["correct"] = bool(res["correct"])
    if validate_items:
        for row, res in zip(validate_rows, executor.validate(validate_items), strict=True):
            row["valid"] = bool(res["valid"])
            row["validation"] = res["reason"]
    return rows


def _verify_item(task: Task, answer: str) -> dict[str, Any]:
    if task.task_type is TaskType.DEDUCTION:
        return {"task_type": "deduction", "answer": answer, "output": task.output}
    if task.task_type is TaskType.ABDUCTION:
        return {
            "task_type": "abduction",
            "program": task.source,
            "answer": answer,
            "output": task.output,
        }
    hidden = [{"input": i, "output": o} for i, o in task.hidden_pairs()]
    return {"task_type": "induction", "answer": answer, "hidden": hidden}


def _proposal_copy(job: Job, program: str | None, inputs: Sequence[str]) -> bool:
    if job.task_type is TaskType.INDUCTION:
        shown = {_norm_args(i) for ref in job.references for i in ref.inputs}
        shown |= {_norm_args(i) for i in _PAPER_EXAMPLE_INPUTS}
        given = [_norm_args(i) for i in inputs]
        return bool(given) and sum(g in shown for g in given) * 2 >= len(given)
    if program is None:
        return False
    literals = prompt_literals(job.spec, None)
    literals |= {_norm_program(r.source) for r in job.references} - {None}  # type: ignore[arg-type]
    return _norm_program(program) in literals


# ------------------------------------------------------------------------------- driver


def build_jobs(
    tokenizer: Any, probe: dict[str, Any], variant: str, temperature: float, args: Any
) -> list[Job]:
    profile, prefill = VARIANTS[variant]
    roles = {Role(r) for r in args.roles.split(",")}
    jobs: list[Job] = []
    for task_type in TaskType:
        for i, task in enumerate(probe["solve"][task_type.value] if Role.SOLVE in roles else []):
            spec = profiles.solve_spec(task, profile, prefill=prefill)
            jobs.append(Job(variant, temperature, Role.SOLVE, task_type, i, spec, task, []))
        for i, refs in enumerate(
            probe["propose"][task_type.value] if Role.PROPOSE in roles else []
        ):
            spec = profiles.propose_spec(
                task_type, refs, [], profile, n_inputs=INDUCTION_INPUTS, prefill=prefill
            )
            jobs.append(Job(variant, temperature, Role.PROPOSE, task_type, i, spec, None, refs))
    for job in jobs:
        job.text = render_spec(tokenizer, job.spec).text
        job.max_tokens = max_tokens_for(profile, job.role, job.task_type, args)
    return jobs


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, float, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        cells[(row["variant"], row["temperature"], row["role"], row["task_type"])].append(row)
    out = []
    for (variant, temperature, role, task_type), cell in cells.items():
        n = len(cell)
        entry: dict[str, Any] = {
            "variant": variant,
            "temperature": temperature,
            "group": f"{task_type}/{role}",
            "n": n,
            "well_formed": sum(r["well_formed"] for r in cell) / n,
            "copy": sum(r["copy"] for r in cell) / n,
            "mean_tokens": sum(r["tokens"] for r in cell) / n,
        }
        key = "correct" if role == "solve" else "valid"
        entry["solve" if role == "solve" else "valid"] = sum(r[key] for r in cell) / n
        out.append(entry)
    return out


def table(summary: list[dict[str, Any]]) -> str:
    """Markdown: one row per variant x temperature; per group well-formed / copy / solve|valid."""
    groups = [f"{t.value}/{r.value}" for r in (Role.SOLVE, Role.PROPOSE) for t in TaskType]
    head = "| variant | T | " + " | ".join(groups) + " |"
    lines = [head, "|" + "---|" * (len(groups) + 2)]
    by_key = {(s["variant"], s["temperature"], s["group"]): s for s in summary}
    present = list(dict.fromkeys(s["variant"] for s in summary))
    for variant in [
        *[v for v in VARIANTS if v in present],
        *[v for v in present if v not in VARIANTS],
    ]:
        for temperature in TEMPERATURES:
            cells = []
            for group in groups:
                s = by_key.get((variant, temperature, group))
                if s is None:
                    cells.append("-")
                    continue
                last = s.get("solve", s.get("valid", 0.0))
                cells.append(f"{s['well_formed']:.2f} / {s['copy']:.2f} / **{last:.2f}**")
            if all(c == "-" for c in cells):
                continue
            t = "greedy" if temperature == 0.0 else f"{temperature:g}"
            lines.append(f"| {variant} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(
    args: Any, rows: list[dict[str, Any]], timings: list[dict[str, Any]], total_s: float
) -> None:
    summary = summarise(rows)
    with (args.out / "samples.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    meta = {
        "model": "SmolLM2-135M-Instruct (fp32, transformers engine, CPU)",
        "args": {k: v for k, v in vars(args).items() if k not in ("data_dir", "out")},
        "variants": VARIANTS,
        "timings": timings,
        "total_s": total_s,
    }
    (args.out / "summary.json").write_text(json.dumps({"meta": meta, "cells": summary}, indent=1))
    (args.out / "table.md").write_text(table(summary) + "\n")


def merge(args: Any, folders: list[Path]) -> None:
    rows: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []
    total = 0.0
    for folder in folders:
        rows += [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        meta = json.loads((folder / "summary.json").read_text())["meta"]
        timings += meta["timings"]
        total = max(total, meta["total_s"])
        args = argparse.Namespace(**{**meta["args"], "out": args.out, "merged_from": len(folders)})
    args.out.mkdir(parents=True, exist_ok=True)
    probe = folders[0] / "probe-set.json"
    (args.out / "probe-set.json").write_text(probe.read_text())
    write_results(args, rows, timings, total)
    print((args.out / "table.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=16, help="solver probe tasks per task type")
    parser.add_argument("--propose", type=int, default=6, help="proposer prompts per task type")
    parser.add_argument("--samples", type=int, default=2, help="samples per prompt when T > 0")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--line-tokens", type=int, default=32, help="one-line opener answers")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--temperatures", default=",".join(str(t) for t in TEMPERATURES))
    parser.add_argument(
        "--cells",
        default="",
        help="explicit variant@T list in the order to run (default: every variant x temperature); "
        "results are written after each cell, so an interrupted run keeps what it measured",
    )
    parser.add_argument("--max-batch", type=int, default=48)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)"
    )
    parser.add_argument("--roles", default="solve,propose", help="roles to measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".azr")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--merge",
        default="",
        help="comma-separated output folders of runs over disjoint cells (e.g. run in parallel "
        "processes): combine their samples into --out and stop",
    )
    args = parser.parse_args()
    if args.merge:
        merge(args, [Path(p) for p in args.merge.split(",")])
        return

    from azr.common.model import prepare_default_model
    from services.executor.engine import Engine, EngineLimits
    from services.executor.sandbox import SandboxConfig, SandboxPair
    from services.inference.transformers_engine import TransformersEngine

    started = time.perf_counter()
    executor = Engine(EngineLimits(timeout_s=5.0), SandboxPair(SandboxConfig(spares=2)))
    executor.start()
    engine = TransformersEngine(
        prepare_default_model(args.data_dir),
        device="cpu",
        dtype="float32",
        max_batch=args.max_batch,
        cpu_threads=args.threads,
    )
    asyncio.run(engine.start())
    try:
        probe = build_probe_set(executor, args.tasks, args.propose)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "probe-set.json").write_text(
            json.dumps(
                {
                    kind: {
                        t: [
                            [r.__dict__ for r in item] if isinstance(item, list) else item.__dict__
                            for item in items
                        ]
                        for t, items in part.items()
                    }
                    for kind, part in probe.items()
                },
                indent=1,
            )
        )
        rows: list[dict[str, Any]] = []
        timings: list[dict[str, Any]] = []
        cells = (
            [(c.split("@")[0], float(c.split("@")[1])) for c in args.cells.split(",")]
            if args.cells
            else [
                (v, float(t))
                for v in args.variants.split(",")
                for t in args.temperatures.split(",")
            ]
        )
        for variant, temperature in cells:
            t0 = time.perf_counter()
            jobs = build_jobs(engine.tokenizer, probe, variant, temperature, args)
            generate(engine, jobs, temperature, args.samples, args.seed)
            cell_rows = score(jobs, executor)
            rows += cell_rows
            seconds = time.perf_counter() - t0
            timings.append({"variant": variant, "temperature": temperature, "s": seconds})
            solved = sum(r.get("correct", False) for r in cell_rows)
            valid = sum(r.get("valid", False) for r in cell_rows)
            print(
                f"{variant:14s} T={temperature:<4g} {len(cell_rows):4d} samples "
                f"{solved:3d} solved {valid:3d} valid  {seconds:6.1f} s",
                flush=True,
            )
            write_results(args, rows, timings, time.perf_counter() - started)
        print((args.out / "table.md").read_text())
    finally:
        executor.close()


if __name__ == "__main__":
    main()

"""How many new tasks the base model's proposals give the seeding stage, per prompt variant.

The seeding stage (azr/loop/seeding.py) and the held-out yardstick both live on what the base
model proposes before any update. This probe asks the real model for deduction proposals through
the proposer route's own code (`services/proposer/router.py`: the profile's prompt, the
service's stop strings and answer closing, the core's parser), validates every parsed proposal
with the project's sandboxed executor, and counts what the stage would keep:

- parsed: the parser found a program and an input;
- valid: the executor validated it (runs, deterministic, within limits);
- new programs: distinct normalised programs (`dedup.program_key`) among the valid ones that
  are not a reference shown in the prompt; the held-out set needs distinct programs;
- trivial: valid proposals flagged identity/constant (`is_trivial_program`).

Usage: ``python bench/seed_yield.py [--n 24] [--cells paper+prefill@identity@0.7,...]``.
Writes one JSON line per cell to ``--out`` (default: stdout only) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azr.contracts.inference import ProposeRequest, Sampling  # noqa: E402
from azr.contracts.tasks import TaskIn  # noqa: E402
from azr.core import dedup  # noqa: E402
from azr.core.rewards import is_trivial_program  # noqa: E402
from azr.core.tasks import IDENTITY_SEED, Task, TaskType  # noqa: E402

# variant -> (propose profile, paper's fenced answer prefill)
VARIANTS: dict[str, tuple[str, bool]] = {
    "paper": ("paper", False),
    "paper+prefill": ("paper", True),
    "opener": ("opener", False),  # two stages: the program, then the call's arguments
    "opener-think": ("opener-think", False),
}
# what the prompt shows as references
REFERENCES: dict[str, list[Task]] = {"identity": [IDENTITY_SEED], "none": []}
DEFAULT_CELLS = [
    "paper+prefill@identity@0.7",
    "opener@identity@0.7",
    "opener-think@identity@0.7",
    "opener@none@0.7",
    "opener-think@none@0.7",
    "opener@none@1.0",
]


def _task_in(task: Task) -> TaskIn:
    return TaskIn(
        task_type=task.task_type,
        program=task.program,
        inputs=list(task.inputs),
        outputs=list(task.outputs),
    )


def run_cell(
    service: Any, executor: Any, variant: str, refs: str, temperature: float, n: int, args: Any
) -> dict[str, Any]:
    from services.proposer.router import propose

    service.propose_profile, prefill = VARIANTS[variant]
    references = REFERENCES[refs]
    request = ProposeRequest(
        task_type=TaskType.DEDUCTION,
        references=[_task_in(t) for t in references],
        n=n,
        sampling=Sampling(
            temperature=temperature,
            max_tokens=args.max_tokens,
            answer_prefill=prefill,
            seed=args.seed,
        ),
    )
    t0 = time.perf_counter()
    response = asyncio.run(propose(request, service))
    seconds = time.perf_counter() - t0
    parsed = [p for p in response.proposals if p.parsed and p.program]
    results = executor.validate(
        [
            {
                "task_type": "deduction",
                "program": "\n".join([*p.imports, p.program or ""]),
                "inputs": list(p.inputs),
            }
            for p in parsed
        ]
    )
    shown = {dedup.program_key(t.program) for t in references} | {
        dedup.program_key(IDENTITY_SEED.program)
    }
    new: set[str] = set()
    trivial = 0
    valid = 0
    examples: list[str] = []
    for p, res in zip(parsed, results, strict=True):
        if not res["valid"]:
            continue
        valid += 1
        task = Task(TaskType.DEDUCTION, p.program or "", tuple(p.inputs), tuple(res["outputs"]))
        if is_trivial_program(task):
            trivial += 1
        key = dedup.program_key(task.program)
        if key not in shown and key not in new:
            new.add(key)
            examples.append(task.program)
    return {
        "variant": variant,
        "references": refs,
        "temperature": temperature,
        "n": n,
        "parsed": len(parsed),
        "valid": valid,
        "new_programs": len(new),
        "trivial": trivial,
        "seconds": round(seconds, 1),
        "examples": examples[:4],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=24, help="proposals per cell")
    parser.add_argument("--cells", default=",".join(DEFAULT_CELLS))
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".azr")
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    args = parser.parse_args()

    from azr.common.model import prepare_default_model
    from services.executor.engine import Engine, EngineLimits
    from services.executor.sandbox import SandboxConfig, SandboxPair
    from services.inference.service import InferenceService
    from services.inference.transformers_engine import TransformersEngine

    executor = Engine(EngineLimits(timeout_s=5.0), SandboxPair(SandboxConfig(spares=2)))
    executor.start()
    engine = TransformersEngine(
        prepare_default_model(args.data_dir),
        device="cpu",
        dtype="float32",
        cpu_threads=args.threads,
    )
    asyncio.run(engine.start())
    service = InferenceService(engine, solve_profile="opener-think")
    rows = []
    try:
        for cell in args.cells.split(","):
            variant, refs, temp = cell.split("@")
            row = run_cell(service, executor, variant, refs, float(temp), args.n, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    finally:
        executor.close()
    print("\n| variant | references | T | parsed | valid | new programs | trivial | s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['references']} | {r['temperature']} | {r['parsed']}/{r['n']} "
            f"| {r['valid']} | {r['new_programs']} | {r['trivial']} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()

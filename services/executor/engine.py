"""Batches of run / validate / verify items over one `SandboxPair`: the part a Celery worker
process (or the benchmark, or a test) calls. The rules come from `azr.core.verification`; this
module sends the jobs they build to the fork-servers, one evaluation per (program, input), and
makes every decision on the trusted side (here): literal parsing, value comparisons with a size
cap per item, determinism across processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azr.core import verification as V
from azr.core.checks import parse_arguments
from azr.core.tasks import TaskType
from services.executor.sandbox import SandboxConfig, SandboxPair


@dataclass
class EngineLimits:
    timeout_s: float = 10.0
    max_output: int = 4000
    max_program_chars: int = 20_000
    banned_modules: tuple[str, ...] | None = None
    second_process: bool = True
    max_answer_chars: int = 10_000
    verify_item_budget_s: float = 30.0

    @classmethod
    def from_settings(cls) -> EngineLimits:
        from azr.settings import get_settings

        s = get_settings().executor
        return cls(
            timeout_s=s.timeout_s,
            max_output=s.max_output_chars,
            max_program_chars=s.max_program_chars,
            banned_modules=tuple(s.banned_modules),
            second_process=s.determinism_second_process,
            max_answer_chars=s.max_answer_chars,
            verify_item_budget_s=s.verify_item_budget_s,
        )


def _expand(
    jobs: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Flatten call jobs into per-input evaluations; the (start, end) slice of each job."""
    flat: list[dict[str, Any]] = []
    spans = []
    for job in jobs:
        start = len(flat)
        flat.extend(V.evaluation_jobs(job))
        spans.append((start, len(flat)))
    return flat, spans


class Engine:
    def __init__(self, limits: EngineLimits | None = None, pair: SandboxPair | None = None) -> None:
        self.limits = limits or EngineLimits()
        self.pair = pair or SandboxPair(SandboxConfig())
        self._started = pair is not None and pair.primary.alive

    def start(self) -> dict[str, Any]:
        if not self._started:
            self.pair.start()
            self._started = True
        return self.pair.report()

    def close(self) -> None:
        self.pair.close()
        self._started = False

    @property
    def banned(self) -> tuple[str, ...]:
        if self.limits.banned_modules is None:
            from azr.core.checks import default_banned_modules

            self.limits.banned_modules = default_banned_modules()
        return self.limits.banned_modules

    def _results(self, jobs: list[dict[str, Any]], raws: list[dict[str, Any]]) -> list[V.JobResult]:
        return [
            V.JobResult.from_evaluations(raws_of, job["repeat"], self.limits.max_output)
            for job, raws_of in zip(jobs, raws_per_job(jobs, raws), strict=True)
        ]

    def _run_jobs(self, jobs: list[dict[str, Any]]) -> list[V.JobResult]:
        flat, _ = _expand(jobs)
        return self._results(jobs, self.pair.run(flat))

    # --- run: no static checks, the runtime layers alone -----------------------------------

    def run(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.start()
        # an input that is not exactly one argument list is that item's error, found here
        malformed = {i: parse_arguments(it["input"]) for i, it in enumerate(items)}
        malformed = {i: why for i, why in malformed.items() if isinstance(why, str)}
        jobs = [
            V.call_job(
                it["program"],
                [it["input"]],
                timeout_s=float(it.get("timeout_s") or self.limits.timeout_s),
                max_output=self.limits.max_output,
            )
            for i, it in enumerate(items)
            if i not in malformed
        ]
        ran = iter(self._run_jobs(jobs))
        out = []
        for i in range(len(items)):
            if i in malformed:
                out.append(
                    {
                        "status": "error",
                        "output": None,
                        "error": f"input: {malformed[i]}",
                        "duration_ms": 0.0,
                    }
                )
                continue
            res = next(ran)
            call = res.calls[0] if res.calls else None
            error: str | None
            if call is None:
                status, output, error = V.ExecStatus.ERROR, None, "sandbox returned no result"
            else:
                status, output, error = call.status, call.output, call.error
            out.append(
                {
                    "status": status.value,
                    "output": output if status is V.ExecStatus.OK else None,
                    "error": error,
                    "duration_ms": res.duration_ms,
                }
            )
        return out

    # --- validate -------------------------------------------------------------------------

    def validate(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.start()
        outcomes: list[V.ValidationOutcome | None] = []
        primary: list[dict[str, Any]] = []
        secondary: list[dict[str, Any]] = []
        for it in items:
            pre = V.validation_precheck(
                TaskType(it["task_type"]),
                it["program"],
                it["inputs"],
                self.banned,
                max_program_chars=self.limits.max_program_chars,
            )
            outcomes.append(pre)
            if pre is not None:
                continue
            for repeat, jobs in ((2, primary), (1, secondary)):
                jobs.append(
                    V.call_job(
                        it["program"],
                        it["inputs"],
                        repeat=repeat,
                        timeout_s=self.limits.timeout_s,
                        max_output=self.limits.max_output,
                    )
                )
        if not self.limits.second_process:
            secondary = []
        flat1, _ = _expand(primary)
        flat2, _ = _expand(secondary)
        # the determinism check runs in another process with another hash seed, and in another
        # order: the whole batch's evaluations reversed
        raw1, raw2 = self.pair.run_both(flat1, flat2[::-1])
        first = self._results(primary, raw1)
        second = self._results(secondary, raw2[::-1]) if secondary else []
        k = 0
        results = []
        for it, pre in zip(items, outcomes, strict=True):
            if pre is None:
                sec = second[k] if second else None
                pre = V.interpret_validation(first[k], sec, len(it["inputs"]))
                k += 1
            results.append(
                {
                    "valid": pre.valid,
                    "status": str(pre.status),
                    "outputs": pre.outputs,
                    "reason": pre.reason,
                }
            )
        return results

    # --- verify ---------------------------------------------------------------------------

    def verify(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.start()
        parsed = [
            V.VerifyItem(
                task_type=TaskType(it["task_type"]),
                program=it.get("program") or "",
                answer=it["answer"],
                input=it.get("input"),
                output=it.get("output"),
                hidden=[(h["input"], h["output"]) for h in it.get("hidden") or []],
            )
            for it in items
        ]
        cap = self.limits.max_answer_chars
        plans = []
        for p in parsed:
            texts = [p.answer, p.output or "", *(t for pair in p.hidden for t in pair)]
            if any(len(t) > cap for t in texts):
                # a size limit per item: this item's error, nobody else's
                plans.append(
                    V.VerifyPlan(
                        V.Verdict(False, V.ExecStatus.ERROR, f"a text is over {cap} characters")
                    )
                )
                continue
            n_runs = max(1, len(p.hidden))
            # a time budget per item: all of its runs together stay within it
            per_run = min(self.limits.timeout_s, self.limits.verify_item_budget_s / n_runs)
            plans.append(
                V.plan_verification(
                    p, self.banned, timeout_s=per_run, max_output=self.limits.max_output
                )
            )
        # stage 1: the programs that must run, one fresh child per (program, input)
        calls = [(i, plan.call) for i, plan in enumerate(plans) if plan.call is not None]
        for (i, _), res in zip(calls, self._run_jobs([job for _, job in calls]), strict=True):
            plans[i] = V.after_call(parsed[i], res)
        # stage 2: value comparisons, here on the trusted side, each text capped: one item's
        # answers can't make another item's comparison slow or fail
        for i, plan in enumerate(plans):
            if plan.verdict is None:
                values = V.compare_values(plan.compare, max(cap, self.limits.max_output))
                plans[i] = V.VerifyPlan(
                    V.after_compare(V.JobResult(V.ExecStatus.OK, values=values), len(values))
                )
        out = []
        for plan in plans:
            verdict = plan.verdict
            assert verdict is not None
            out.append(
                {
                    "correct": verdict.correct,
                    "status": str(verdict.status),
                    "reason": verdict.reason,
                }
            )
        return out


def raws_per_job(
    jobs: list[dict[str, Any]], raws: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Split the fork-server's flat results back into one list per call job."""
    out = []
    at = 0
    for job in jobs:
        n = len(job["args"])
        out.append(raws[at : at + n])
        at += n
    return out

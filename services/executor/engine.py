"""Batches of run / validate / verify items over one `SandboxPair`: the part a Celery worker
process (or the benchmark, or a test) calls. The rules come from `azr.core.verification`; this
module only sends the jobs they build to the fork-servers, one round-trip per stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azr.core import verification as V
from azr.core.tasks import TaskType
from services.executor.sandbox import SandboxConfig, SandboxPair


@dataclass
class EngineLimits:
    timeout_s: float = 10.0
    max_output: int = 4000
    max_program_chars: int = 20_000
    banned_modules: tuple[str, ...] | None = None
    second_process: bool = True

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
        )


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

    # --- run: no static checks, the runtime layers alone -----------------------------------

    def run(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.start()
        jobs = [
            V.call_job(
                it["program"],
                [it["input"]],
                timeout_s=float(it.get("timeout_s") or self.limits.timeout_s),
                max_output=self.limits.max_output,
            )
            for it in items
        ]
        out = []
        for raw in self.pair.run(jobs):
            res = V.JobResult.from_dict(raw)
            call = res.calls[0] if res.calls else None
            if res.status is not V.ExecStatus.OK or call is None:
                status, output, error = res.status, None, res.error
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
            timeout = self.limits.timeout_s * len(it["inputs"])
            primary.append(
                V.call_job(
                    it["program"],
                    it["inputs"],
                    repeat=2,
                    timeout_s=timeout,
                    max_output=self.limits.max_output,
                )
            )
            if self.limits.second_process:
                secondary.append(
                    V.call_job(
                        it["program"],
                        it["inputs"],
                        repeat=1,
                        timeout_s=timeout,
                        max_output=self.limits.max_output,
                    )
                )
        first, second = self.pair.run_both(primary, secondary)
        k = 0
        results = []
        for it, pre in zip(items, outcomes, strict=True):
            if pre is None:
                sec = V.JobResult.from_dict(second[k]) if second else None
                pre = V.interpret_validation(
                    V.JobResult.from_dict(first[k]), sec, len(it["inputs"])
                )
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
        plans = [
            V.plan_verification(
                p, self.banned, timeout_s=self.limits.timeout_s, max_output=self.limits.max_output
            )
            for p in parsed
        ]
        # stage 1: the programs that must run
        calls = [(i, plan.call) for i, plan in enumerate(plans) if plan.call is not None]
        for (i, _), raw in zip(calls, self.pair.run([job for _, job in calls]), strict=True):
            plans[i] = V.after_call(parsed[i], V.JobResult.from_dict(raw))
        # stage 2: value comparisons. They run no model code (literals only), so one sandboxed
        # child compares the pairs of the whole batch.
        compares = [(i, plan.compare) for i, plan in enumerate(plans) if plan.verdict is None]
        if compares:
            flat = [pair for _, pairs in compares for pair in pairs]
            (raw,) = self.pair.run([V.compare_job(flat, timeout_s=self.limits.timeout_s)])
            whole = V.JobResult.from_dict(raw)
            at = 0
            for i, pairs in compares:
                part = V.JobResult(
                    whole.status,
                    whole.error,
                    whole.duration_ms,
                    values=whole.values[at : at + len(pairs)],
                )
                at += len(pairs)
                plans[i] = V.VerifyPlan(V.after_compare(part, len(pairs)))
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

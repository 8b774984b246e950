"""POST /v1/solve: build the solver prompt per task, sample n answers each, parse them."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from azr.core.parsing import parse_answer
from azr.core.prompts import solve_prompt
from azr.core.tasks import Role
from services.inference.deps import ready_service
from services.inference.engine import Prompt
from services.inference.prompting import RenderedPrompt
from services.inference.schemas import AnswerOut, SolveRequest, SolveResponse, SolveResult
from services.inference.service import InferenceService, generation_fields

router = APIRouter(tags=["solver"])


@router.post("/v1/solve", response_model=SolveResponse)
async def solve(
    body: SolveRequest, service: InferenceService = Depends(ready_service)
) -> SolveResponse:
    params = service.params(body.sampling, body.n, Role.SOLVE)
    rendered: list[RenderedPrompt] = []
    errors: list[str | None] = []
    for task_in in body.tasks:
        task = task_in.to_task()
        r = service.render(solve_prompt(task), task.task_type, Role.SOLVE, body.sampling)
        rendered.append(r)
        # A task whose prompt does not fit is reported, not sampled; the others still are.
        errors.append(service.too_long(r.text, params.max_tokens))
    todo = [i for i, e in enumerate(errors) if e is None]
    prompts: list[Prompt] = [rendered[i].text for i in todo]
    sampled = (
        dict(zip(todo, await service.sample("solve", prompts, params), strict=True)) if todo else {}
    )
    results = []
    for i, task_in in enumerate(body.tasks):
        answers = []
        for sample in sampled.get(i, []):
            finished = service.finish(
                sample, rendered[i].prefill, task_in.task_type, Role.SOLVE, body.sampling
            )
            parsed = parse_answer(task_in.task_type, finished.response)
            answers.append(
                AnswerOut(
                    **generation_fields(finished),
                    task_type=task_in.task_type,
                    value=parsed.value,
                    format_ok=parsed.format_ok,
                    error=parsed.error,
                )
            )
        results.append(
            SolveResult(task_index=i, prompt=rendered[i].text, answers=answers, error=errors[i])
        )
    return SolveResponse(results=results)

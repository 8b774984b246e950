"""POST /v1/solve: build the solver prompt per task, sample n answers each, parse them."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from azr.contracts.inference import AnswerOut, SolveRequest, SolveResponse, SolveResult
from azr.core.profiles import PromptSpec, parse_solve
from azr.core.tasks import Role
from services.inference.deps import ready_service
from services.inference.engine import Prompt, Sample
from services.inference.prompting import RenderedPrompt
from services.inference.service import InferenceService, generation_fields

router = APIRouter(tags=["solver"])


@router.post("/v1/solve", response_model=SolveResponse)
async def solve(
    body: SolveRequest, service: InferenceService = Depends(ready_service)
) -> SolveResponse:
    specs: list[PromptSpec] = []
    rendered: list[RenderedPrompt] = []
    errors: list[str | None] = []
    for task_in in body.tasks:
        spec = service.solve_spec(task_in.to_task(), body.sampling)
        r = service.render_spec(spec)
        specs.append(spec)
        rendered.append(r)
        # A task whose prompt does not fit is reported, not sampled; the others still are.
        errors.append(service.too_long(r.text, body.sampling.max_tokens))
    # Tasks whose answers end at different stop strings (a value line, a program's fence) are
    # sampled in separate batches, one per set of stop strings.
    batches: dict[tuple[str, ...], list[int]] = {}
    for i, spec in enumerate(specs):
        if errors[i] is None:
            stop = service.params(body.sampling, body.n, Role.SOLVE, spec).stop
            batches.setdefault(stop, []).append(i)
    sampled: dict[int, list[Sample]] = {}
    for todo in batches.values():
        params = service.params(body.sampling, body.n, Role.SOLVE, specs[todo[0]])
        prompts: list[Prompt] = [rendered[i].text for i in todo]
        sampled.update(zip(todo, await service.sample("solve", prompts, params), strict=True))
    results = []
    for i, task_in in enumerate(body.tasks):
        answers = []
        for sample in sampled.get(i, []):
            finished = service.finish(
                sample,
                rendered[i].prefill,
                task_in.task_type,
                Role.SOLVE,
                body.sampling,
                spec=specs[i],
            )
            parsed = parse_solve(specs[i], task_in.task_type, finished.response)
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

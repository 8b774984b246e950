"""POST /v1/propose: build the proposer prompt, sample n proposals, parse them with the core."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends, HTTPException, status

from azr.contracts.inference import GenerationOut, ProposalOut, ProposeRequest, ProposeResponse
from azr.core.profiles import PromptSpec, parse_propose
from azr.core.tasks import Role, Task, TaskType
from services.inference.deps import ready_service
from services.inference.engine import Sample
from services.inference.service import Finished, InferenceService, generation_fields

router = APIRouter(tags=["proposer"])


@router.post("/v1/propose", response_model=ProposeResponse)
async def propose(
    body: ProposeRequest, service: InferenceService = Depends(ready_service)
) -> ProposeResponse:
    references = [r.to_task() for r in body.references]
    for i, ref in enumerate(references):
        if ref.task_type is not TaskType.INDUCTION and not ref.outputs:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"references[{i}]: a reference needs its gold output",
            )
    spec = service.propose_spec(body.task_type, references, body.n_inputs, body.sampling)
    rendered = service.render_spec(spec)
    params = service.params(body.sampling, body.n, None, spec)
    why = service.too_long(rendered.text, params.max_tokens)
    if why:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, why)
    (samples,) = await service.sample("propose", [rendered.text], params)
    seconds = await service.second_stage(rendered.text, samples, spec, body.sampling)
    # Induction proposals keep the reference's program; the proposer writes inputs + message.
    reference = references[0] if body.task_type is TaskType.INDUCTION else None
    proposals = [
        proposal_out(
            spec,
            body,
            service.finish(
                sample,
                rendered.prefill,
                body.task_type,
                Role.PROPOSE,
                body.sampling,
                body.n_inputs,
                spec,
            ),
            second,
            reference,
        )
        for sample, second in zip(samples, seconds, strict=True)
    ]
    return ProposeResponse(task_type=body.task_type, prompt=rendered.text, proposals=proposals)


def proposal_out(
    spec: PromptSpec,
    body: ProposeRequest,
    finished: Finished,
    second: Sample | None,
    reference: Task | None,
) -> ProposalOut:
    """One proposal: the first stage's generation and, for a two-stage reply, its second stage;
    the parser sees both stages joined by the followup the service wrote."""
    continuation = None
    if second is not None:
        finished = replace(finished, response=finished.response + spec.followup + second.text)
        continuation = GenerationOut(**generation_fields(Finished(second, finished.response)))
    parsed = parse_propose(
        spec, body.task_type, finished.response, n_inputs=body.n_inputs, reference=reference
    )
    return ProposalOut(
        **generation_fields(finished),
        task_type=body.task_type,
        program=parsed.program,
        inputs=list(parsed.inputs),
        message=parsed.message,
        imports=list(parsed.imports),
        format_ok=parsed.format_ok,
        parsed=parsed.parsed,
        error=parsed.error,
        continuation=continuation,
    )

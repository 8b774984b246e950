"""POST /v1/propose: build the proposer prompt, sample n proposals, parse them with the core."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, status

from azr.contracts.inference import GenerationOut, ProposalOut, ProposeRequest, ProposeResponse
from azr.core.profiles import parse_propose
from azr.core.tasks import Role, TaskType
from services.inference.deps import ready_service
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
    proposals = []
    for sample, second in zip(samples, seconds, strict=True):
        finished = service.finish(
            sample,
            rendered.prefill,
            body.task_type,
            Role.PROPOSE,
            body.sampling,
            body.n_inputs,
            spec,
        )
        continuation = None
        if second is not None:
            finished.response += spec.followup + second.text
            continuation = GenerationOut(**generation_fields(Finished(second, finished.response)))
        parsed = parse_propose(
            spec, body.task_type, finished.response, n_inputs=body.n_inputs, reference=reference
        )
        proposals.append(
            ProposalOut(
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
        )
    return ProposeResponse(task_type=body.task_type, prompt=rendered.text, proposals=proposals)

"""Routes every inference process has: weights (GET / POST) and raw generation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, status

from azr.contracts.inference import (
    GenerateRequest,
    GenerateResponse,
    GenerationOut,
    WeightsInfoOut,
    WeightsLoadRequest,
)
from services.inference import metrics
from services.inference.deps import get_service, ready_service
from services.inference.engine import EngineUnavailable, Prompt, WeightLoadError
from services.inference.service import (
    Finished,
    InferenceService,
    generation_fields,
    weight_error,
)
from services.inference.weights_guard import WeightsRefused, checked_checkpoint


def weights_info(service: InferenceService) -> WeightsInfoOut:
    info = service.engine.weights
    return WeightsInfoOut(
        engine=service.engine.name,
        version=info.version,
        checksum=info.checksum,
        path=info.path,
        loaded_at=info.loaded_at,
        swap_seconds=info.swap_seconds,
    )


def build_router(auth: Callable[..., None], checkpoint_root: Path) -> APIRouter:
    """`auth` guards the data routes; POST /v1/weights loads only what `weights_guard` allows
    under `checkpoint_root`."""
    router = APIRouter(tags=["weights"])

    @router.get("/v1/weights", response_model=WeightsInfoOut)
    def get_weights(service: InferenceService = Depends(get_service)) -> WeightsInfoOut:
        return weights_info(service)

    @router.post("/v1/weights", response_model=WeightsInfoOut, dependencies=[Depends(auth)])
    async def load_weights(
        body: WeightsLoadRequest, service: InferenceService = Depends(get_service)
    ) -> WeightsInfoOut:
        started = time.perf_counter()
        try:
            directory = await asyncio.to_thread(
                checked_checkpoint, body.path, checkpoint_root, service.engine.model_dir
            )
        except WeightsRefused as exc:
            metrics.SWAPS.labels("refused").inc()
            raise HTTPException(
                exc.status_code, f"{exc}; still serving the previous version"
            ) from exc
        try:
            await service.transfer.receive(service.engine, body.version, str(directory))
        except WeightLoadError as exc:
            metrics.SWAPS.labels("rejected").inc()
            raise weight_error(exc) from exc
        except EngineUnavailable as exc:
            metrics.SWAPS.labels("unavailable").inc()
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        metrics.SWAPS.labels("ok").inc()
        metrics.SWAP_SECONDS.observe(
            service.engine.weights.swap_seconds or time.perf_counter() - started
        )
        metrics.WEIGHT_VERSION.set(body.version)
        return weights_info(service)

    @router.post(
        "/v1/generate",
        response_model=GenerateResponse,
        tags=["generate"],
        dependencies=[Depends(auth)],
    )
    async def generate(
        body: GenerateRequest, service: InferenceService = Depends(ready_service)
    ) -> GenerateResponse:
        params = service.params(body.sampling, body.n)
        vocab = len(service.engine.tokenizer)
        prompts: list[Prompt] = []
        for i, prompt in enumerate(body.prompts):
            if isinstance(prompt, list) and any(t >= vocab for t in prompt):
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"prompts[{i}]: token ids must be below {vocab}",
                )
            if not prompt:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"prompts[{i}] is empty")
            why = service.too_long(prompt, params.max_tokens)
            if why:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"prompts[{i}]: {why}")
            prompts.append(prompt)
        out = await service.sample("generate", prompts, params)
        return GenerateResponse(
            outputs=[
                [GenerationOut(**generation_fields(Finished(s, s.text))) for s in per_prompt]
                for per_prompt in out
            ]
        )

    return router

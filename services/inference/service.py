"""What the proposer and solver routers share: rendering, length checks, sampling with metrics,
and mapping engine errors to HTTP answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import HTTPException, status

from azr.core.tasks import Role, TaskType
from services.inference import metrics
from services.inference.engine import (
    Engine,
    EngineUnavailable,
    Prompt,
    Sample,
    SamplingParams,
    WeightLoadError,
)
from services.inference.prompting import PromptStyle, RenderedPrompt, render
from services.inference.schemas import GenerationOut, Sampling


@dataclass
class InferenceService:
    engine: Engine
    max_model_len: int = 2048
    prompt_style: PromptStyle = "chat"
    answer_prefill: bool = False
    stop: list[str] = field(default_factory=lambda: ["</answer>"])
    banned: list[str] = field(default_factory=list)

    def render(
        self, task_text: str, task_type: TaskType, role: Role, sampling: Sampling
    ) -> RenderedPrompt:
        prefill = (
            self.answer_prefill if sampling.answer_prefill is None else sampling.answer_prefill
        )
        return render(
            self.engine.tokenizer,
            task_text,
            task_type=task_type,
            role=role,
            style=self.prompt_style,
            prefill_answer=prefill,
        )

    def params(self, sampling: Sampling, n: int) -> SamplingParams:
        return SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            stop=tuple(self.stop if sampling.stop is None else sampling.stop),
            seed=sampling.seed,
        )

    def too_long(self, prompt: Prompt, max_tokens: int) -> str | None:
        """Why a prompt cannot be served (None when it can)."""
        n_prompt = (
            len(self.engine.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if isinstance(prompt, str)
            else len(prompt)
        )
        if n_prompt + max_tokens > self.max_model_len:
            return (
                f"prompt is {n_prompt} tokens; with max_tokens={max_tokens} that exceeds the "
                f"model's context of {self.max_model_len} tokens"
            )
        return None

    async def sample(
        self, route: str, prompts: list[Prompt], params: SamplingParams
    ) -> list[list[Sample]]:
        with observe(route) as record:
            if not self.engine.ready:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the engine is not ready")
            try:
                out = await self.engine.generate_params(prompts, params)
            except EngineUnavailable as exc:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
            except ValueError as exc:  # e.g. token ids outside the vocabulary
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
            except RuntimeError as exc:
                code = getattr(exc, "status", 500)
                if 400 <= code < 500:
                    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
                raise
            record(out)
            return out


@contextmanager
def observe(route: str) -> Iterator[Callable[[list[list[Sample]]], None]]:
    """Count a request, its outcome, latency, sequences and tokens."""
    started = time.perf_counter()
    outcome = "error"

    def record(out: list[list[Sample]]) -> None:
        nonlocal outcome
        outcome = "ok"
        samples = [s for per_prompt in out for s in per_prompt]
        metrics.SEQUENCES.labels(route).inc(len(samples))
        metrics.TOKENS.labels(route).inc(sum(len(s.completion_token_ids) for s in samples))

    try:
        yield record
    except HTTPException as exc:
        outcome = str(exc.status_code)
        raise
    finally:
        metrics.REQUESTS.labels(route, outcome).inc()
        metrics.LATENCY.labels(route).observe(time.perf_counter() - started)


def generation_fields(sample: Sample, prefill: str) -> dict[str, object]:
    return GenerationOut(
        text=sample.text,
        response=prefill + sample.text,
        prompt_token_ids=sample.prompt_token_ids,
        completion_token_ids=sample.completion_token_ids,
        logprobs=sample.logprobs,
        finish_reason=sample.finish_reason,
        version=sample.version,
    ).model_dump()


def weight_error(exc: WeightLoadError) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, f"{exc}; still serving the previous version"
    )

"""What the proposer and solver routers share: rendering, length checks, sampling with metrics,
and mapping engine errors to HTTP answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import HTTPException, status

from azr.contracts.inference import GenerationOut, Sampling
from azr.core import profiles
from azr.core.parsing import close_answer
from azr.core.profiles import PromptSpec
from azr.core.tasks import Role, Task, TaskType
from services.inference import metrics
from services.inference.engine import (
    Engine,
    EngineUnavailable,
    Prompt,
    Sample,
    SamplingParams,
    WeightLoadError,
)
from services.inference.prompting import (
    PromptStyle,
    RenderedPrompt,
    render,
    render_spec,
    stop_strings,
)
from services.inference.transfer import FilesystemTransfer, WeightTransfer


@dataclass
class InferenceService:
    engine: Engine
    max_model_len: int = 2048
    prompt_style: PromptStyle = "chat"
    solve_profile: str = "paper"
    propose_profile: str = "paper"
    answer_prefill: bool = False
    close_answers: bool = True
    stop: list[str] = field(default_factory=lambda: ["</answer>"])
    banned: list[str] = field(default_factory=list)
    transfer: WeightTransfer = field(default_factory=FilesystemTransfer)

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

    def prefill_of(self, sampling: Sampling) -> bool:
        return self.answer_prefill if sampling.answer_prefill is None else sampling.answer_prefill

    def solve_spec(self, task: Task, sampling: Sampling) -> PromptSpec:
        return profiles.solve_spec(task, self.solve_profile, prefill=self.prefill_of(sampling))

    def propose_spec(
        self, task_type: TaskType, references: list[Task], n_inputs: int, sampling: Sampling
    ) -> PromptSpec:
        return profiles.propose_spec(
            task_type,
            references,
            self.banned,
            self.propose_profile,
            n_inputs=n_inputs,
            prefill=self.prefill_of(sampling),
        )

    def render_spec(self, spec: PromptSpec) -> RenderedPrompt:
        return render_spec(self.engine.tokenizer, spec, style=self.prompt_style)

    def finish(
        self,
        sample: Sample,
        prefill: str,
        task_type: TaskType,
        role: Role,
        sampling: Sampling,
        n_inputs: int = 10,
        spec: PromptSpec | None = None,
    ) -> Finished:
        """The response the parser sees; with `close_answers`, a sample whose paper-profile answer
        is complete but unclosed is cut after its last needed block (token ids and logprobs too,
        so the trainer learns only from tokens that are part of the answer) and closed for it.
        Opener-profile answers end at their stop strings and are never cut here."""
        response = prefill + sample.text
        spec = spec or PromptSpec("paper", "", "", "", "", ())
        close = self.close_answers if sampling.close_answers is None else sampling.close_answers
        at = (
            profiles.complete_at(spec, task_type, role, response, n_inputs=n_inputs)
            if close
            else None
        )
        if at is None:
            return Finished(sample, response)
        cut = cut_sample(self.engine.tokenizer, sample, at - len(prefill))
        response = prefill + cut.text
        at = profiles.complete_at(spec, task_type, role, response, n_inputs=n_inputs)
        if at is None:  # cannot happen for a consistent tokenizer; keep the sample as it was
            return Finished(sample, prefill + sample.text)
        return Finished(cut, close_answer(response, at), answer_closed=True)

    def params(
        self,
        sampling: Sampling,
        n: int,
        role: Role | None = None,
        spec: PromptSpec | None = None,
    ) -> SamplingParams:
        return SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            stop=tuple(self.stop_strings(sampling, role, spec)),
            seed=sampling.seed,
        )

    def stop_strings(
        self, sampling: Sampling, role: Role | None, spec: PromptSpec | None = None
    ) -> list[str]:
        if sampling.stop is not None:
            return list(sampling.stop)
        if spec is not None and spec.profile != "paper":
            # An opener's answer ends at a line end or a fence: stop there, not at the limit.
            return list(dict.fromkeys([*self.stop, *spec.stop]))
        prefill = (
            self.answer_prefill if sampling.answer_prefill is None else sampling.answer_prefill
        )
        close = self.close_answers if sampling.close_answers is None else sampling.close_answers
        return stop_strings(self.stop, role, prefill=prefill, close_answers=close)

    async def second_stage(
        self, prompt: str, samples: list[Sample], spec: PromptSpec, sampling: Sampling
    ) -> list[Sample | None]:
        """A two-stage reply's second stage, per first-stage sample: the model continues from
        its own first stage plus ``spec.followup`` until ``spec.followup_stop``. None where the
        profile has no second stage, or the first stage did not end where the second begins
        (it ran to the length limit), or the continued prompt would not fit."""
        out: list[Sample | None] = [None] * len(samples)
        if not spec.followup:
            return out
        todo = [
            i
            for i, s in enumerate(samples)
            if profiles.first_stage_done(spec, s.text)
            and self.too_long(prompt + s.text + spec.followup, sampling.max_tokens) is None
        ]
        if not todo:
            return out
        params = replace(
            self.params(sampling, 1, Role.PROPOSE, spec),
            stop=tuple(dict.fromkeys([*self.stop, *spec.followup_stop])),
        )
        prompts: list[Prompt] = [prompt + samples[i].text + spec.followup for i in todo]
        seconds = await self.sample("propose", prompts, params)
        for i, second in zip(todo, seconds, strict=True):
            out[i] = second[0] if second else None
        return out

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


@dataclass(frozen=True)
class Finished:
    sample: Sample
    response: str  # what the parser sees
    answer_closed: bool = False


def cut_sample(tokenizer: Any, sample: Sample, n_chars: int) -> Sample:
    """`sample` shortened to the fewest tokens whose text covers its first `n_chars` characters.

    Decoded length grows with the token count, so a binary search needs about log2(n) decodes.
    """
    ids = sample.completion_token_ids

    def text_of(k: int) -> str:
        return str(tokenizer.decode(ids[:k], skip_special_tokens=True))

    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(text_of(mid)) >= n_chars:
            hi = mid
        else:
            lo = mid + 1
    return replace(
        sample,
        text=text_of(lo),
        completion_token_ids=ids[:lo],
        logprobs=sample.logprobs[:lo],
        finish_reason="answer_complete",
    )


def generation_fields(finished: Finished) -> dict[str, object]:
    sample = finished.sample
    return GenerationOut(
        text=sample.text,
        response=finished.response,
        prompt_token_ids=sample.prompt_token_ids,
        completion_token_ids=sample.completion_token_ids,
        logprobs=sample.logprobs,
        finish_reason=sample.finish_reason,
        version=sample.version,
        answer_closed=finished.answer_closed,
    ).model_dump()


def weight_error(exc: WeightLoadError) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, f"{exc}; still serving the previous version"
    )

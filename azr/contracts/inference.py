"""The inference service's HTTP contract: propose, solve, generate and weights (server and
client import these same classes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from azr.contracts.tasks import Strict, TaskIn
from azr.core.tasks import TaskType

__all__ = [
    "MAX_N",
    "MAX_TASKS",
    "MAX_WEIGHT_VERSION",
    "AnswerOut",
    "GenerateRequest",
    "GenerateResponse",
    "GenerationOut",
    "ProposalOut",
    "ProposeRequest",
    "ProposeResponse",
    "Sampling",
    "SolveRequest",
    "SolveResponse",
    "SolveResult",
    "Strict",
    "TaskIn",
    "WeightsInfoOut",
    "WeightsLoadRequest",
]

MAX_N = 256
MAX_TASKS = 1024
MAX_WEIGHT_VERSION = 10**9  # weight versions are counters; a larger one is a bad request


class Sampling(Strict):
    """Sampling knobs. Leave top_p=1 and top_k=-1 for on-policy logprobs (the trainer's)."""

    temperature: float = Field(1.0, ge=0.0, le=5.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, description="-1 = no top-k cut")
    max_tokens: int = Field(512, ge=1, le=32768)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=8, description="stop strings (kept in the text); default from settings"
    )
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    answer_prefill: bool | None = Field(
        None, description="pre-open the answer block after <think>; default from settings"
    )
    close_answers: bool | None = Field(
        None,
        description="end each answer once its blocks are complete and close it with </answer>; "
        "default from settings",
    )


class ProposeRequest(Strict):
    task_type: TaskType
    references: list[TaskIn] = Field(default_factory=list, max_length=64)
    n: int = Field(1, ge=1, le=MAX_N, description="proposals to sample")
    n_inputs: int = Field(10, ge=1, le=64, description="induction: inputs to ask for")
    sampling: Sampling = Field(default_factory=Sampling)

    @model_validator(mode="after")
    def _induction_reference(self) -> ProposeRequest:
        if self.task_type is TaskType.INDUCTION and not self.references:
            raise ValueError("an induction proposal needs one reference program in `references`")
        return self


class SolveRequest(Strict):
    tasks: list[TaskIn] = Field(..., min_length=1, max_length=MAX_TASKS)
    n: int = Field(1, ge=1, le=MAX_N, description="answers to sample per task")
    sampling: Sampling = Field(default_factory=Sampling)

    @model_validator(mode="after")
    def _solvable(self) -> SolveRequest:
        for i, task in enumerate(self.tasks):
            if task.task_type is not TaskType.DEDUCTION and not task.outputs:
                raise ValueError(f"tasks[{i}]: a {task.task_type.value} task needs its outputs")
            if task.task_type is TaskType.INDUCTION and len(task.inputs) < 2:
                raise ValueError(
                    f"tasks[{i}]: an induction task needs at least 2 input/output pairs"
                )
        return self


class GenerationOut(BaseModel):
    """One sampled completion, with what the trainer needs to score and update on it."""

    text: str = Field(..., description="the model's completion (stop string kept)")
    response: str = Field(..., description="what the parser saw: answer prefill + text")
    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    logprobs: list[float] = Field(..., description="sampling log-prob of each completion token")
    finish_reason: str = Field(
        ..., description="stop, length, or answer_complete (cut after the answer's last block)"
    )
    version: int = Field(..., description="weight version that produced every token")
    answer_closed: bool = Field(
        False, description="the service, not the model, wrote </answer> after the last block"
    )


class ProposalOut(GenerationOut):
    task_type: TaskType
    program: str | None
    inputs: list[str]
    message: str | None
    imports: list[str]
    format_ok: bool
    parsed: bool
    error: str | None
    continuation: GenerationOut | None = Field(
        None,
        description="a two-stage proposal's second stage (the input, written after the "
        "program): its own prompt and tokens; trained with the proposal's reward",
    )


class ProposeResponse(BaseModel):
    task_type: TaskType
    prompt: str
    proposals: list[ProposalOut]


class AnswerOut(GenerationOut):
    task_type: TaskType
    value: str
    format_ok: bool
    error: str | None


class SolveResult(BaseModel):
    task_index: int
    prompt: str
    answers: list[AnswerOut]
    error: str | None = Field(None, description="set when the task could not be sampled")


class SolveResponse(BaseModel):
    results: list[SolveResult]


class GenerateRequest(Strict):
    """Raw generation: rendered prompt strings or token-id lists (no prompt building)."""

    prompts: list[str | list[Annotated[int, Field(ge=0)]]] = Field(
        ..., min_length=1, max_length=MAX_TASKS
    )
    n: int = Field(1, ge=1, le=MAX_N)
    sampling: Sampling = Field(default_factory=Sampling)


class GenerateResponse(BaseModel):
    outputs: list[list[GenerationOut]]


class WeightsLoadRequest(Strict):
    version: int = Field(..., ge=0, le=MAX_WEIGHT_VERSION)
    path: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="checkpoint directory under the checkpoint root (or the base model's)",
    )


class WeightsInfoOut(BaseModel):
    engine: str
    version: int
    checksum: str | None
    path: str | None
    loaded_at: float
    swap_seconds: float | None = None

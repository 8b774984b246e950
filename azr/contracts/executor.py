"""HTTP schemas of the executor API (separate from the core's records). The contract of issue 2
is fixed; fields may be added."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["ok", "error", "timeout", "memory", "forbidden", "output_limit"]
TaskTypeName = Literal["deduction", "abduction", "induction"]

MAX_TEXT = 100_000  # hard cap per text field; the settings' limits are checked by the API


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunItem(_Strict):
    program: str = Field(max_length=MAX_TEXT)
    input: str = Field("", max_length=MAX_TEXT, description="argument text, e.g. 'abc', 3")
    timeout_s: float | None = Field(None, gt=0, description="wall-clock limit for this item")


class RunRequest(_Strict):
    items: list[RunItem] = Field(min_length=1)


class RunResult(BaseModel):
    status: Status
    output: str | None = None
    error: str | None = None
    duration_ms: float = 0.0


class RunResponse(BaseModel):
    results: list[RunResult]


class ValidateItem(_Strict):
    task_type: TaskTypeName
    program: str = Field(max_length=MAX_TEXT)
    inputs: list[str] = Field(min_length=1, max_length=64)
    message: str | None = Field(None, max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _inputs_size(self) -> ValidateItem:
        for i, text in enumerate(self.inputs):
            if len(text) > MAX_TEXT:
                raise ValueError(f"inputs[{i}] is over {MAX_TEXT} characters")
        return self


class ValidateRequest(_Strict):
    items: list[ValidateItem] = Field(min_length=1)


class ValidateResult(BaseModel):
    valid: bool
    status: str
    outputs: list[str] = Field(default_factory=list)
    reason: str | None = None


class ValidateResponse(BaseModel):
    results: list[ValidateResult]


class HiddenPair(_Strict):
    input: str = Field(max_length=MAX_TEXT)
    output: str = Field(max_length=MAX_TEXT)


class VerifyItem(_Strict):
    task_type: TaskTypeName
    program: str = Field("", max_length=MAX_TEXT)
    input: str | None = Field(None, max_length=MAX_TEXT)
    output: str | None = Field(None, max_length=MAX_TEXT)
    answer: str = Field(max_length=MAX_TEXT)
    hidden: list[HiddenPair] | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _fields_for_type(self) -> VerifyItem:
        if self.task_type in ("deduction", "abduction") and self.output is None:
            raise ValueError(f"{self.task_type} needs 'output' (the gold output)")
        if self.task_type == "abduction" and not self.program:
            raise ValueError("abduction needs 'program' (the gold program)")
        if self.task_type == "induction" and not self.hidden:
            raise ValueError("induction needs 'hidden' (the hidden input/output pairs)")
        return self


class VerifyRequest(_Strict):
    items: list[VerifyItem] = Field(min_length=1)


class VerifyResult(BaseModel):
    correct: bool
    status: str
    reason: str | None = None


class VerifyResponse(BaseModel):
    results: list[VerifyResult]

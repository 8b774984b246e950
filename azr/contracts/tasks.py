"""The task JSON: a validated task as it crosses a service boundary (gateway -> inference,
exports, injections). Inputs and outputs are Python source text."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from azr.core.tasks import Task, TaskType


class Strict(BaseModel):
    """Base of every request model: an unknown field is a 4xx, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class TaskIn(Strict):
    """A validated task as the gateway stores it (inputs/outputs are Python source text)."""

    task_type: TaskType
    program: str = Field(..., min_length=1, max_length=20000)
    inputs: list[Annotated[str, Field(max_length=5000)]] = Field(..., min_length=1, max_length=64)
    outputs: list[Annotated[str, Field(max_length=5000)]] = Field(
        default_factory=list, max_length=64
    )
    message: str = Field("", max_length=5000)
    imports: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=32
    )

    @model_validator(mode="after")
    def _pairs(self) -> TaskIn:
        if self.outputs and len(self.outputs) != len(self.inputs):
            raise ValueError(
                f"{len(self.inputs)} inputs but {len(self.outputs)} outputs; they come in pairs"
            )
        return self

    def to_task(self) -> Task:
        return Task(
            task_type=self.task_type,
            program=self.program,
            inputs=tuple(self.inputs),
            outputs=tuple(self.outputs),
            message=self.message,
            imports=tuple(self.imports),
        )

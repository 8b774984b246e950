"""How a core prompt reaches the model.

The core writes the task text (`azr.core.prompts`); this module turns it into the string the
engine tokenises. Two styles:

- ``chat`` (default): the model's own chat template with the R1 instruction as the system turn
  and the task as the user turn, and the assistant turn pre-opened with ``<think>``. SmolLM2 is
  an instruct model trained on ChatML; without the template it drifts out of the dialogue.
- ``plain``: the reference's raw-text R1 envelope (``wrap_r1``), for base models.

Either way the generation starts inside the pre-opened think section, optionally after the
core's `answer_prefill` (think closed, ``<answer>`` and the first fence opened). The parser is
given ``prefill + generation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from azr.core.profiles import PromptSpec
from azr.core.prompts import R1_INSTRUCTION, answer_prefill, wrap_r1
from azr.core.tasks import Role, TaskType

PromptStyle = Literal["chat", "plain"]


@dataclass(frozen=True)
class RenderedPrompt:
    text: str  # what the engine tokenises
    prefill: str  # the part of the answer already written for the model (after <think>)
    spec: PromptSpec | None = None  # the profile's prompt it was rendered from


def render_spec(tokenizer: Any, spec: PromptSpec, *, style: PromptStyle = "chat") -> RenderedPrompt:
    """A profile's prompt as engine text: the chat template with the spec's instruction as the
    system turn (``chat``), or the plain ``User:``/``Assistant:`` envelope; either way the reply
    starts with the spec's ``reply_start`` (``<think>`` and/or the opener)."""
    if style == "chat" and getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(
            [
                {"role": "system", "content": spec.system},
                {"role": "user", "content": spec.task_text},
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
        return RenderedPrompt(text=f"{head}{spec.reply_start}", prefill=spec.prefill, spec=spec)
    text = f"{spec.system}\nUser: {spec.task_text}\nAssistant: {spec.reply_start}"
    return RenderedPrompt(text=text, prefill=spec.prefill, spec=spec)


def render(
    tokenizer: Any,
    task_text: str,
    *,
    task_type: TaskType,
    role: Role,
    style: PromptStyle = "chat",
    prefill_answer: bool = False,
) -> RenderedPrompt:
    prefill = answer_prefill(task_type, role) if prefill_answer else ""
    if style == "chat" and getattr(tokenizer, "chat_template", None):
        head = tokenizer.apply_chat_template(
            [{"role": "system", "content": R1_INSTRUCTION}, {"role": "user", "content": task_text}],
            tokenize=False,
            add_generation_prompt=True,
        )
        return RenderedPrompt(text=f"{head}<think>{prefill}", prefill=prefill)
    return RenderedPrompt(text=wrap_r1(task_text, prefill=prefill), prefill=prefill)


def stop_strings(
    base: list[str], role: Role | None, *, prefill: bool, close_answers: bool
) -> list[str]:
    """The stop strings of a request. With the answer prefilled the solver's one block is already
    open, so the first fence the model writes completes the answer: with `close_answers` the
    generation stops there instead of running on to the length limit."""
    if role is Role.SOLVE and prefill and close_answers and "```" not in base:
        return [*base, "```"]
    return list(base)

"""The inference service ends an answer once its blocks are complete: it cuts the sample's text,
token ids and logprobs together and writes ``</answer>`` for the model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from azr.contracts.inference import Sampling
from azr.core.parsing import parse_proposal
from azr.core.tasks import Role, TaskType
from services.inference.engine import Sample
from services.inference.service import InferenceService
from services.inference.transformers_engine import TransformersEngine

PREFILL = (
    " I will write a new function f and one input for it. </think>\n<answer>\n```python\ndef f("
)
COMPLETE = "x):\n    return [v * 2 for v in x]\n```\n```input\n[1, 2, 3]\n```"
RAMBLE = "\nThe function doubles each item of the list, so the output is [2, 4, 6]. Next"


@pytest.fixture(scope="module")
def service(tiny_model_dir: Path) -> Iterator[InferenceService]:
    engine = TransformersEngine(tiny_model_dir, device="cpu")
    asyncio.run(engine.start())
    yield InferenceService(engine=engine, close_answers=True)


def sample_of(service: InferenceService, text: str) -> Sample:
    ids = service.engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    return Sample(
        text=text,
        prompt_token_ids=[1, 2, 3],
        completion_token_ids=list(ids),
        logprobs=[-0.1 * (i + 1) for i in range(len(ids))],
        finish_reason="length",
        version=4,
    )


def test_a_rambling_complete_proposal_is_cut_with_its_tokens(service: InferenceService) -> None:
    sample = sample_of(service, COMPLETE + RAMBLE)
    done = service.finish(sample, PREFILL, TaskType.DEDUCTION, Role.PROPOSE, Sampling())
    cut = done.sample
    assert done.answer_closed and cut.finish_reason == "answer_complete"
    assert 0 < len(cut.completion_token_ids) < len(sample.completion_token_ids)
    assert cut.completion_token_ids == sample.completion_token_ids[: len(cut.completion_token_ids)]
    assert cut.logprobs == sample.logprobs[: len(cut.completion_token_ids)]
    tokenizer = service.engine.tokenizer
    assert tokenizer.decode(cut.completion_token_ids, skip_special_tokens=True) == cut.text
    assert cut.text.startswith(COMPLETE) and "doubles" not in cut.text
    assert done.response.endswith("</answer>")
    proposal = parse_proposal(TaskType.DEDUCTION, done.response)
    assert proposal.format_ok and proposal.inputs == ["[1, 2, 3]"]
    # The fewest tokens: one token less no longer holds the closing fence.
    shorter = tokenizer.decode(cut.completion_token_ids[:-1], skip_special_tokens=True)
    assert not shorter.startswith(COMPLETE)


def test_incomplete_answers_and_the_switch_leave_samples_alone(service: InferenceService) -> None:
    incomplete = sample_of(service, "x):\n    return x\n```" + RAMBLE)
    done = service.finish(incomplete, PREFILL, TaskType.DEDUCTION, Role.PROPOSE, Sampling())
    assert not done.answer_closed and done.sample is incomplete
    assert done.response == PREFILL + incomplete.text

    complete = sample_of(service, COMPLETE + RAMBLE)
    off = Sampling(close_answers=False)
    done = service.finish(complete, PREFILL, TaskType.DEDUCTION, Role.PROPOSE, off)
    assert not done.answer_closed and done.sample is complete
    assert not parse_proposal(TaskType.DEDUCTION, done.response).format_ok


def test_a_prefilled_solver_stops_at_the_fence_that_closes_its_block(
    service: InferenceService,
) -> None:
    prefilled = Sampling(answer_prefill=True)
    assert "```" in service.params(prefilled, 1, Role.SOLVE).stop
    # Not without the prefill (the model's own opening fence would stop it), not when answers are
    # left open, not for proposers (they need two blocks), and never over explicit stop strings.
    assert "```" not in service.params(Sampling(answer_prefill=False), 1, Role.SOLVE).stop
    no_close = Sampling(answer_prefill=True, close_answers=False)
    assert "```" not in service.params(no_close, 1, Role.SOLVE).stop
    assert "```" not in service.params(prefilled, 1, Role.PROPOSE).stop
    explicit = Sampling(answer_prefill=True, stop=["END"])
    assert service.params(explicit, 1, Role.SOLVE).stop == ("END",)

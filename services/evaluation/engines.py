"""The model under evaluation: resolve `base` / a version number / a directory, and drive one
of the inference service's engines (vLLM or transformers) synchronously for the harness."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azr.common.checkpoints import list_versions, version_dir
from azr.core.tasks import Role
from services.inference.prompting import PromptStyle, RenderedPrompt, stop_strings

from .datasets import Problem
from .prompting import build_prompt

if TYPE_CHECKING:
    from azr.settings import Settings
    from services.inference.engine import Engine


class ModelNotFound(ValueError):
    """MODEL_OR_VERSION names nothing that can be loaded."""


@dataclass(frozen=True)
class ModelRef:
    path: Path
    label: str  # short, file-name safe: "base", "v000012", or the directory name
    version: int | None


def resolve_model(spec: str, settings: Settings) -> ModelRef:
    """`base`: the bundled SmolLM2 (converted on first use); an integer: that checkpoint version
    under the data directory; `latest`: the newest version; anything else: an HF model dir."""
    if spec == "base":
        from azr.common.model import prepare_default_model

        return ModelRef(prepare_default_model(settings.data_dir), "base", 0)
    root = settings.checkpoint_dir
    if spec == "latest":
        versions = list_versions(root)
        if not versions:
            raise ModelNotFound(f"no checkpoint versions under {root}")
        spec = str(versions[-1])
    if spec.isdigit():
        version = int(spec)
        path = version_dir(root, version)
        if not (path / "config.json").is_file():
            known = list_versions(root) if root.is_dir() else []
            raise ModelNotFound(f"no checkpoint version {version} under {root} (have {known})")
        return ModelRef(path, path.name, version)
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"{spec!r} is not `base`, a version number or an HF model directory")
    return ModelRef(path, path.name or "model", None)


def make_engine(name: str, model_dir: Path, settings: Settings) -> Engine:
    """The inference service's own engine factory with `name` as the engine, so an evaluation
    loads a model (LoRA versions, vLLM port and log, parallelism) exactly as the service does."""
    if name not in ("transformers", "vllm"):
        raise ValueError(f"unknown engine {name!r}; choose vllm or transformers")
    from services.inference.main import make_engine as make_service_engine

    inference = settings.inference.model_copy(update={"engine": name})
    return make_service_engine(settings.model_copy(update={"inference": inference}), model_dir)


class EngineSession:
    """Owns an engine and an event loop; `generate` and `render` are the harness's callables.

    Prompts are rendered exactly as the solver service renders them (its prompt style, answer
    prefill and stop strings), so a trained checkpoint is asked the way it was trained."""

    def __init__(
        self,
        engine: Engine,
        *,
        style: PromptStyle = "chat",
        prefill: bool = False,
        stop: tuple[str, ...] = ("</answer>",),
        profile: str = "paper",
    ) -> None:
        self.engine = engine
        self.style = style
        self.prefill = prefill
        self.stop = stop
        self.profile = profile
        # An opener profile's answers end at their own stop strings (a line, a fence): remembered
        # per rendered prompt so that `generate` can batch prompts that stop alike.
        self._stops: dict[str, tuple[str, ...]] = {}
        self._runner = asyncio.Runner()

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> EngineSession:
        inf = settings.inference
        stop = stop_strings(
            list(inf.stop),
            Role.SOLVE,
            prefill=inf.answer_prefill,
            close_answers=inf.close_answers,
        )
        return cls(
            engine,
            style=inf.prompt_style,
            prefill=inf.answer_prefill,
            stop=tuple(stop),
            profile=settings.prompts.solve_profile,
        )

    def __enter__(self) -> EngineSession:
        self._runner.run(self.engine.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._runner.run(self.engine.close())
        finally:
            self._runner.close()

    def render(self, problem: Problem) -> RenderedPrompt:
        rendered = build_prompt(
            problem,
            self.engine.tokenizer,
            style=self.style,
            prefill=self.prefill,
            profile=self.profile,
        )
        if rendered.spec is not None and rendered.spec.profile != "paper":
            self._stops[rendered.text] = tuple(dict.fromkeys([*self.stop, *rendered.spec.stop]))
        return rendered

    def generate(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
    ) -> list[list[str]]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(self._stops.pop(prompt, self.stop), []).append(i)
        out: list[list[str]] = [[] for _ in prompts]
        for stop, todo in groups.items():
            samples = self._runner.run(
                self.engine.generate(
                    [prompts[i] for i in todo],
                    n=n,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    stop=stop,
                    seed=seed,
                )
            )
            for i, per_prompt in zip(todo, samples, strict=True):
                out[i] = [s.text for s in per_prompt]
        return out

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.engine.name,
            "weight_version": self.engine.version,
            "checksum": self.engine.checksum,
            "prompt_style": self.style,
            "answer_prefill": self.prefill,
            "prompt_profile": self.profile,
            "stop": list(self.stop),
        }

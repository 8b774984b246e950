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
        from services.inference.model import prepare_default_model

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
    inf = settings.inference
    if name == "transformers":
        from services.inference.transformers_engine import TransformersEngine

        return TransformersEngine(
            model_dir, device=inf.device, dtype=inf.dtype, max_batch=inf.max_batch
        )
    if name == "vllm":
        from services.inference.vllm_engine import VLLMEngine

        return VLLMEngine(
            model_dir,
            url=inf.vllm_url,
            dtype=inf.dtype,
            max_model_len=inf.max_model_len,
            enforce_eager=inf.vllm_enforce_eager,
            kv_cache_gib=inf.vllm_kv_cache_gib,
            startup_timeout_s=inf.vllm_startup_timeout_s,
        )
    raise ValueError(f"unknown engine {name!r}; choose vllm or transformers")


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
    ) -> None:
        self.engine = engine
        self.style = style
        self.prefill = prefill
        self.stop = stop
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
        return cls(engine, style=inf.prompt_style, prefill=inf.answer_prefill, stop=tuple(stop))

    def __enter__(self) -> EngineSession:
        self._runner.run(self.engine.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._runner.run(self.engine.close())
        finally:
            self._runner.close()

    def render(self, problem: Problem) -> RenderedPrompt:
        return build_prompt(problem, self.engine.tokenizer, style=self.style, prefill=self.prefill)

    def generate(
        self,
        prompts: list[str],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
    ) -> list[list[str]]:
        samples = self._runner.run(
            self.engine.generate(
                prompts,
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                stop=self.stop,
                seed=seed,
            )
        )
        return [[s.text for s in per_prompt] for per_prompt in samples]

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.engine.name,
            "weight_version": self.engine.version,
            "checksum": self.engine.checksum,
            "prompt_style": self.style,
            "answer_prefill": self.prefill,
            "stop": list(self.stop),
        }

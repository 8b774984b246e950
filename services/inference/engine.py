"""The engine interface both engines implement; it knows nothing of HTTP.

A generation is served wholly by one weight version: generations hold a shared "read" slot of
a version gate and a weight swap takes it exclusively, so a swap waits for the generations in
flight to finish, holds new ones back while it loads, and every sample records the version that
produced all of its tokens. The swap loads into the engine only after the checkpoint's files
match its manifest; any failure leaves the old weights serving.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azr.common.checkpoints import ChecksumMismatch, read_manifest, verify_checkpoint

Prompt = str | list[int]


class WeightLoadError(RuntimeError):
    """A checkpoint could not be loaded; the engine still serves its previous version."""


class EngineUnavailable(RuntimeError):
    """The engine is not started, or its backing server stopped answering."""


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 (or 0): no top-k cut
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: always generate max_tokens

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Sample:
    """One completion: the text (stop strings cut off), the token ids that were sampled
    (including a final EOS, which is an action too) and the log-probability of each under the
    sampling distribution (after temperature / top-p / top-k)."""

    text: str
    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    version: int


@dataclass
class WeightsInfo:
    version: int
    checksum: str | None
    path: str | None
    loaded_at: float
    swap_seconds: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class VersionGate:
    """Readers-writer gate with writer preference: generations share it, a swap owns it.

    Writer preference keeps a steady stream of requests from starving a swap.
    """

    def __init__(self) -> None:
        self._condition: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @property
    def _cond(self) -> asyncio.Condition:
        # asyncio primitives belong to one loop; an idle gate may move to another (tests and
        # sync callers run a fresh loop per call).
        loop = asyncio.get_running_loop()
        if self._condition is None or self._loop is not loop:
            if self._readers or self._writer or self._writers_waiting:
                raise RuntimeError("the version gate is in use on another event loop")
            self._condition, self._loop = asyncio.Condition(), loop
        return self._condition

    @property
    def write_pending(self) -> bool:
        """A swap holds the gate or waits for it (new generations are held back)."""
        return self._writer or self._writers_waiting > 0

    @asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        async with self._cond:
            self._writers_waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


def is_lora_adapter(directory: Path) -> bool:
    """A PEFT LoRA adapter folder (adapter_config.json) rather than a whole model."""
    return (Path(directory) / "adapter_config.json").is_file()


def verify_for_load(directory: Path, expected_config: dict[str, Any] | None) -> str:
    """Check a checkpoint before any byte of it reaches the engine; returns its checksum."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightLoadError(f"checkpoint {directory} does not exist")
    try:
        checksum = verify_checkpoint(directory)
    except (ChecksumMismatch, ValueError, KeyError) as exc:
        raise WeightLoadError(f"checkpoint {directory} failed verification: {exc}") from exc
    if is_lora_adapter(directory):
        return checksum  # its shapes are checked by the engine that applies it
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise WeightLoadError(f"checkpoint {directory} has no config.json")
    if expected_config is not None:
        config = json.loads(config_path.read_text())
        # In-place reloads need the same shapes; a different architecture needs a new engine.
        for key in (
            "architectures",
            "hidden_size",
            "num_hidden_layers",
            "vocab_size",
            "num_attention_heads",
            "num_key_value_heads",
            "intermediate_size",
        ):
            if config.get(key) != expected_config.get(key):
                raise WeightLoadError(
                    f"checkpoint {directory} has {key}={config.get(key)!r} but the served model "
                    f"has {expected_config.get(key)!r}; an in-place swap needs the same shapes"
                )
    return checksum


def manifest_checksum(directory: Path) -> str | None:
    try:
        return str(read_manifest(directory).get("checksum"))
    except (ChecksumMismatch, ValueError, OSError):
        return None


class Engine(ABC):
    """generate / load_weights / version / checksum, shared by both engines."""

    name: str = "engine"
    serves_lora: bool = False  # whether load_weights accepts a LoRA adapter folder

    def __init__(self, model_dir: Path, initial_version: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self._gate = VersionGate()
        self._info = WeightsInfo(
            version=initial_version,
            checksum=manifest_checksum(self.model_dir),
            path=str(self.model_dir),
            loaded_at=time.time(),
        )
        self._config: dict[str, Any] = json.loads((self.model_dir / "config.json").read_text())

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load the model / start the server. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model / stop the server. Idempotent."""

    @property
    def ready(self) -> bool:
        return True

    # -- weights ---------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._info.version

    @property
    def checksum(self) -> str | None:
        return self._info.checksum

    @property
    def swapping(self) -> bool:
        return self._gate.write_pending

    @property
    def weights(self) -> WeightsInfo:
        return self._info

    async def load_weights(self, version: int, directory: Path) -> WeightsInfo:
        """Verify `directory` against its manifest, then swap it in between generations."""
        directory = Path(directory).resolve()
        if is_lora_adapter(directory) and not self.serves_lora:
            raise WeightLoadError(
                f"{directory} is a LoRA adapter; this {self.name} engine loads whole checkpoints "
                "only (the vLLM engine started with enable_lora serves adapters)"
            )
        checksum = await asyncio.to_thread(verify_for_load, directory, self._config)
        async with self._gate.write():
            started = time.perf_counter()
            await self._swap(directory)
            elapsed = time.perf_counter() - started
            previous = {
                "version": self._info.version,
                "checksum": self._info.checksum,
                "path": self._info.path,
                "loaded_at": self._info.loaded_at,
            }
            self._info = WeightsInfo(
                version=version,
                checksum=checksum,
                path=str(directory),
                loaded_at=time.time(),
                swap_seconds=elapsed,
                history=[*self._info.history[-19:], previous],
            )
        return self._info

    @abstractmethod
    async def _swap(self, directory: Path) -> None:
        """Load verified weights; on failure restore the previous ones and raise WeightLoadError."""

    # -- generation ------------------------------------------------------------------------
    async def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = -1,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        ignore_eos: bool = False,
    ) -> list[list[Sample]]:
        """Per prompt, `n` samples; all of them produced by one weight version."""
        params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_tokens=max_tokens,
            stop=tuple(stop),
            seed=seed,
            ignore_eos=ignore_eos,
        )
        return await self.generate_params(list(prompts), params)

    async def generate_params(
        self, prompts: list[Prompt], params: SamplingParams
    ) -> list[list[Sample]]:
        if not prompts:
            return []
        async with self._gate.read():
            return await self._generate(prompts, params, self._info.version)

    @abstractmethod
    async def _generate(
        self, prompts: list[Prompt], params: SamplingParams, version: int
    ) -> list[list[Sample]]: ...

    @property
    @abstractmethod
    def tokenizer(self) -> Any: ...

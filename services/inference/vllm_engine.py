"""The vLLM engine: an OpenAI-compatible vLLM server on localhost, driven over HTTP.

The server runs in dev mode for its RL routes. A swap goes, in the only order found safe on
CPU (see docs/inference.md): ``/pause?mode=wait`` -> ``/collective_rpc reload_weights`` ->
``/reset_prefix_cache`` -> ``/resume``. ``wait`` lets requests already inside vLLM finish on the
old weights (``keep`` would mix two versions inside one completion; ``abort`` would fail them),
and the engine's own version gate means none of *our* requests is in flight at that point, so
every sample carries exactly one version. Admin routes are only ever bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from azr.common.hardware import auto_dtype
from services.inference.engine import (
    Engine,
    EngineUnavailable,
    Prompt,
    Sample,
    SamplingParams,
    WeightLoadError,
    is_lora_adapter,
)

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
# Tries per completion when the connection drops before an answer (see _post_completion).
COMPLETION_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def vllm_port(preferred: int) -> int:
    """`preferred` when it is free on localhost, else any free port (a proposer and a solver
    started apart on one machine each get their own vLLM)."""
    with socket.socket() as s:
        try:
            s.bind((LOCALHOST, preferred))
        except OSError:
            return free_port()
    return preferred


def server_command(
    model_dir: Path,
    *,
    port: int,
    served_name: str,
    dtype: str,
    max_model_len: int,
    enforce_eager: bool,
    enable_lora: bool = False,
    max_lora_rank: int = 16,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--dtype",
        dtype,
        "--max-model-len",
        str(max_model_len),
        "--host",
        LOCALHOST,
        "--port",
        str(port),
        # Logprobs of the distribution tokens are sampled from (after temperature/top-p/top-k).
        "--logprobs-mode",
        "processed_logprobs",
        "--disable-uvicorn-access-log",
    ]
    if enforce_eager:
        cmd.append("--enforce-eager")
    if enable_lora:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", "2"]
    # Only what differs from vLLM's defaults, so the CPU command stays the tested one.
    if tensor_parallel_size > 1:
        cmd += ["--tensor-parallel-size", str(tensor_parallel_size)]
    if data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(data_parallel_size)]
    if gpu_memory_utilization != 0.9:
        cmd += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    return cmd


def server_env(kv_cache_gib: int, enable_lora: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "VLLM_SERVER_DEV_MODE": "1",  # /pause, /resume, /collective_rpc, /reset_prefix_cache
            "VLLM_HOST_IP": LOCALHOST,  # else its internal queues bind the machine's address
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_USE_AOT_COMPILE": "0",  # the saved compile never loads in the CPU build
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        }
    )
    if enable_lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "1"
    return env


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(
        self,
        model_dir: Path,
        *,
        url: str | None = None,
        port: int | None = None,
        dtype: str = "auto",
        max_model_len: int = 2048,
        enforce_eager: bool = False,
        kv_cache_gib: int = 2,
        startup_timeout_s: float = 900.0,
        request_timeout_s: float = 1800.0,
        log_path: Path | None = None,
        served_name: str = "policy",
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        pass_seed: bool | None = None,
        initial_version: int = 0,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
    ) -> None:
        super().__init__(model_dir, initial_version)
        self._external = url is not None
        self.port = port or free_port()
        self.base_url = (url or f"http://{LOCALHOST}:{self.port}").rstrip("/")
        self.dtype = resolve_dtype(dtype)
        self.max_model_len = max_model_len
        self.enforce_eager = enforce_eager
        self.kv_cache_gib = kv_cache_gib
        self.startup_timeout_s = startup_timeout_s
        self.request_timeout_s = request_timeout_s
        self.log_path = log_path
        self.served_name = served_name
        self.enable_lora = enable_lora
        self.serves_lora = enable_lora
        self.max_lora_rank = max_lora_rank
        self.tensor_parallel_size = tensor_parallel_size
        self.data_parallel_size = data_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        # Requests name the adapter of the current version, or the base model when there is none.
        self._request_model = served_name
        self._base_weights = Path(model_dir)  # the last whole checkpoint loaded (adapters aside)
        # vLLM 0.32's CPU runner crashes its engine core on a seeded request whose prefill gets
        # chunked ("CPU Generator does not use offset"), so seeds are only sent on CUDA.
        self.pass_seed = pass_seed
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._tokenizer: Any = None
        self._ready = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._ready:
            return
        from transformers import AutoTokenizer

        self._tokenizer = await asyncio.to_thread(
            AutoTokenizer.from_pretrained, str(self.model_dir)
        )
        self._client = self._new_client()
        if not self._external:
            self._spawn()
        await self._wait_healthy()
        if self._external:
            # Reuse the served model name of a server we did not start.
            models = (await self._client.get("/v1/models")).json()
            self.served_name = models["data"][0]["id"]
            self._request_model = self.served_name
        self._ready = True

    def _new_client(self) -> httpx.AsyncClient:
        self._client_loop = asyncio.get_running_loop()
        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.request_timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )

    def _spawn(self) -> None:
        cmd = server_command(
            self.model_dir,
            port=self.port,
            served_name=self.served_name,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            enforce_eager=self.enforce_eager,
            enable_lora=self.enable_lora,
            max_lora_rank=self.max_lora_rank,
            tensor_parallel_size=self.tensor_parallel_size,
            data_parallel_size=self.data_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
        )
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child for its lifetime
        log.info("starting vLLM on %s: %s", self.base_url, " ".join(cmd))
        # Its own process group, so stopping it also stops its engine-core child.
        self._proc = subprocess.Popen(
            cmd,
            env=server_env(self.kv_cache_gib, self.enable_lora),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if out is not subprocess.DEVNULL:
            out.close()

    async def _wait_healthy(self) -> None:
        assert self._client is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise EngineUnavailable(
                    f"vLLM exited with code {self._proc.returncode} during start-up"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await self._client.get("/health", timeout=5.0)).status_code == 200:
                    return
            await asyncio.sleep(1.0)
        await self.close()
        raise EngineUnavailable(
            f"vLLM did not become healthy within {self.startup_timeout_s:.0f} s"
        )

    async def close(self) -> None:
        self._ready = False
        if self._client is not None:
            if self._client_loop is asyncio.get_running_loop():
                await self._client.aclose()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            await asyncio.to_thread(stop_process_group, proc)

    @property
    def ready(self) -> bool:
        return self._ready and (self._proc is None or self._proc.poll() is None)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise EngineUnavailable("the vLLM engine is not started")
        return self._tokenizer

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or not self.ready:
            raise EngineUnavailable("the vLLM engine is not running")
        if self._client_loop is not asyncio.get_running_loop():
            # Pooled connections belong to the loop that opened them; a caller on another
            # loop (a sync wrapper, a test) gets a fresh pool.
            self._client = self._new_client()
        return self._client

    # -- weights ---------------------------------------------------------------------------
    async def _admin(self, path: str, **kwargs: Any) -> Any:
        response = await self._http().post(path, **kwargs)
        if response.status_code >= 400:
            raise WeightLoadError(
                f"vLLM {path} answered {response.status_code}: {response.text[:500]}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:  # some routes (load_lora_adapter) answer in plain text
            return response.text

    async def _swap(self, directory: Path) -> None:
        await self._admin("/pause", params={"mode": "wait"})
        try:
            if is_lora_adapter(directory):
                # The base weights stay; the adapter is (re)loaded in place under one name. A
                # failed load leaves the previous adapter (or the base model) serving.
                try:
                    await self.load_lora(self.lora_name, directory)
                finally:
                    await self._admin("/reset_prefix_cache")
                self._request_model = self.lora_name
                return
            try:
                await self._reload(directory)
                self._base_weights = directory
                self._request_model = self.served_name
            except WeightLoadError:
                # A reload can fail half-way; put the old weights back before serving again.
                log.exception("reload of %s failed; restoring %s", directory, self._base_weights)
                await self._reload(self._base_weights)
                raise
            finally:
                # Prefix-cache entries hold KV computed with the weights they were made with.
                await self._admin("/reset_prefix_cache")
        finally:
            await self._admin("/resume")

    async def _reload(self, directory: Path) -> None:
        result = await self._admin(
            "/collective_rpc",
            json={"method": "reload_weights", "kwargs": {"weights_path": str(directory)}},
        )
        errors = [r for r in (result or {}).get("results", []) if r not in (None, {}, [])]
        if errors and any(isinstance(r, dict) and r.get("error") for r in errors):
            raise WeightLoadError(f"vLLM reload_weights failed: {errors}")

    # -- generation ------------------------------------------------------------------------
    def _encode(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            return ids
        return [int(t) for t in prompt]

    async def _generate(
        self, prompts: list[Prompt], params: SamplingParams, version: int
    ) -> list[list[Sample]]:
        # One request per prompt, all in flight together: vLLM batches them itself.
        encoded = [self._encode(p) for p in prompts]
        return list(
            await asyncio.gather(*(self._complete(ids, params, version) for ids in encoded))
        )

    async def _post_completion(self, body: dict[str, Any]) -> httpx.Response:
        """POST one completion. A pooled keep-alive connection that the server closed just as
        it was reused fails with a read or protocol error before any answer; a completion has
        no side effect, so it is sent again on a fresh connection (a CRUXEval run under load
        lost its engine this way). Other errors, and a server process that has exited, fail."""
        for attempt in range(COMPLETION_ATTEMPTS):
            try:
                return await self._http().post("/v1/completions", json=body)
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
                if attempt + 1 == COMPLETION_ATTEMPTS or not self._server_alive():
                    raise EngineUnavailable(f"vLLM request failed: {exc!r}") from exc
                log.warning("vLLM connection dropped (%r); sending the request again", exc)
                await asyncio.sleep(0.1 * (attempt + 1))
            except httpx.HTTPError as exc:
                raise EngineUnavailable(f"vLLM request failed: {exc!r}") from exc
        raise AssertionError("unreachable")

    def _server_alive(self) -> bool:
        return self._proc is None or self._proc.poll() is None

    async def _complete(self, ids: list[int], params: SamplingParams, version: int) -> list[Sample]:
        body: dict[str, Any] = {
            "model": self._request_model,
            # Token ids, tokenised here: both engines see exactly the same prompt tokens.
            "prompt": ids,
            # vLLM refuses n>1 when greedy; greedy samples are identical, so one is copied.
            "n": 1 if params.greedy else params.n,
            "max_tokens": params.max_tokens,
            "temperature": max(params.temperature, 0.0),
            "top_p": params.top_p,
            "top_k": params.top_k if params.top_k > 0 else -1,
            "logprobs": 0,
            "return_token_ids": True,
            "skip_special_tokens": True,
        }
        if params.stop:
            body["stop"] = list(params.stop)
            body["include_stop_str_in_output"] = True
        if params.seed is not None and self._seeds_ok():
            body["seed"] = params.seed
        if params.ignore_eos:
            body["ignore_eos"] = True
        response = await self._post_completion(body)
        if response.status_code >= 400:
            raise VLLMRequestError(response.status_code, response.text[:1000])
        data = response.json()
        choices = sorted(data["choices"], key=lambda c: c["index"])
        samples = []
        for choice in choices:
            lp = choice.get("logprobs") or {}
            samples.append(
                Sample(
                    text=choice["text"],
                    prompt_token_ids=list(choice.get("prompt_token_ids") or ids),
                    completion_token_ids=list(choice.get("token_ids") or []),
                    logprobs=[float(x) for x in lp.get("token_logprobs") or []],
                    finish_reason=str(choice.get("finish_reason") or "stop"),
                    version=version,
                )
            )
        if params.greedy and params.n > 1:
            samples = [replace(samples[0]) for _ in range(params.n)]
        return samples

    def _seeds_ok(self) -> bool:
        if self.pass_seed is None:
            import torch

            self.pass_seed = bool(torch.cuda.is_available())
        return self.pass_seed

    # -- LoRA ------------------------------------------------------------------------------
    @property
    def lora_name(self) -> str:
        return f"{self.served_name}-lora"

    async def load_lora(self, name: str, path: Path) -> None:
        """Load or replace (load_inplace) a LoRA adapter; the server needs --enable-lora.
        `load_weights` with an adapter folder is the verified, versioned way to use this."""
        await self._admin(
            "/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": str(path), "load_inplace": True},
        )


def resolve_dtype(dtype: str) -> str:
    """ "auto": bf16 where it is native (CUDA, or a CPU with AVX-512-BF16/AMX), else fp32."""
    if dtype != "auto":
        return dtype
    import torch

    return auto_dtype(on_cuda=torch.cuda.is_available())


class VLLMRequestError(RuntimeError):
    """vLLM rejected a generation request (for example a prompt longer than the model allows)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"vLLM answered {status}: {detail}")
        self.status = status
        self.detail = detail


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # The engine-core child may outlive the parent briefly; make sure the group is gone.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)

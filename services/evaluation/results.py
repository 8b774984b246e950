"""Per-problem records, the run summary, and the files and table they are written to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from azr.common.stats import bootstrap_ci, pass_at_k


@dataclass
class ProblemResult:
    id: str
    bench: str
    completions: list[str]
    answers: list[str]
    format_ok: list[bool]
    correct: list[bool]
    statuses: list[str]
    reasons: list[str | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def c(self) -> int:
        return sum(self.correct)

    def pass_at(self, k: int) -> float:
        return pass_at_k(self.n, self.c, k)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["n"], d["c"] = self.n, self.c
        d["pass@1"] = self.pass_at(1)
        return d


def ks_for(samples: int) -> list[int]:
    """pass@k is reported for k = 1, 2, 4, ... up to and including the sample count."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    ks.append(samples)
    return sorted(set(ks))


def summarise(
    results: list[ProblemResult],
    *,
    meta: dict[str, Any],
    samples: int,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The score (pass@1, and pass@k when sampling) with seeded 95% bootstrap intervals."""
    if not results:
        raise ValueError("no problems were evaluated")
    scores: dict[str, Any] = {}
    for k in ks_for(samples):
        per_problem = [r.pass_at(k) for r in results]
        scores[f"pass@{k}"] = bootstrap_ci(per_problem, resamples=resamples, seed=seed).as_dict()
    n_samples = sum(r.n for r in results)
    return {
        **meta,
        "problems": len(results),
        "samples": samples,
        "score": scores["pass@1"]["mean"],
        "scores": scores,
        "format_ok_rate": sum(sum(r.format_ok) for r in results) / n_samples,
        "status_counts": _count(s for r in results for s in r.statuses),
        "bootstrap": {"resamples": resamples, "seed": seed, "method": "percentile"},
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def write_results(
    out_dir: Path, stem: str, results: list[ProblemResult], summary: dict[str, Any]
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / f"{stem}.jsonl"
    with jsonl.open("w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    summary_path = out_dir / f"{stem}.summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return jsonl, summary_path


def load_results(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def format_table(summaries: list[dict[str, Any]]) -> str:
    """A plain-text table: one row per (model, benchmark), every pass@k with its 95% CI."""
    header = f"{'model':<28} {'bench':<11} {'n':>4}  {'metric':<8} {'score':>6}  95% CI"
    lines = [header, "-" * len(header)]
    for s in summaries:
        for name, sc in s["scores"].items():
            lines.append(
                f"{str(s.get('model', '?'))[-28:]:<28} {s.get('bench', '?'):<11} "
                f"{s['problems']:>4}  {name:<8} {sc['mean']:>6.3f}  "
                f"[{sc['ci_low']:.3f}, {sc['ci_high']:.3f}]"
            )
    return "\n".join(lines)

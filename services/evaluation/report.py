"""Learning curves and the before/after table for docs/results.md.

    python -m services.evaluation.report curves RUN_METRICS.json OUT_DIR
    python -m services.evaluation.report compare BEFORE.jsonl AFTER.jsonl [...pairs]
    python -m services.evaluation.report echo HELDOUT.jsonl RESULTS.jsonl [...]

`RUN_METRICS.json` is the gateway's ``GET /v1/runs/{id}/metrics`` answer (the run report folder
keeps a copy as metrics.json). `compare` pairs the
per-problem results of two models on the same problems and reports the difference with a paired
bootstrap CI; a difference whose interval contains 0 is reported as no change. `echo` measures
one shortcut of a trained solver (docs/results.md, run 8): the share of held-out answers that
repeat the task's input, against the share of held-out tasks whose output is their input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from azr.common.stats import bootstrap_ci, paired_bootstrap_diff

from .results import load_results

SIGNALS = (
    "trivial_share",
    "duplicate_rate",
    "solved_share",
    "determinism_rejections",
    "mean_program_chars",
)


def plot_curves(metrics: dict[str, Any], out_dir: Path) -> list[Path]:
    """The reward-hacking signals and the in-loop CRUXEval scores (with CIs) over steps. The
    per-group curves (rewards and rates per task type and role) are the gateway's run report
    (`services.gateway.report.write_report`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    steps = sorted(metrics.get("steps", []), key=lambda s: s["step"])
    signal_points = {
        name: [
            (s["step"], float(s["metrics"]["signals"][name]))
            for s in steps
            if name in (s.get("metrics", {}).get("signals") or {})
        ]
        for name in SIGNALS
    }
    if any(signal_points.values()):
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
        for name, points in signal_points.items():
            if not points:
                continue
            ax = axes[1] if name == "mean_program_chars" else axes[0]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=name)
        axes[0].set_title("reward-hacking signals (shares)")
        axes[1].set_title("mean program length (chars)")
        for ax in axes:
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        path = out_dir / "hacking_signals.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    evals = [
        (s["step"], s["metrics"]["eval"]) for s in steps if (s.get("metrics") or {}).get("eval")
    ]
    if evals:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for bench in ("cruxeval-o", "cruxeval-i"):
            pts = [(step, e[bench]) for step, e in evals if bench in e]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1]["score"] for p in pts], marker="o", label=bench)
            ax.fill_between(
                xs, [p[1]["ci_low"] for p in pts], [p[1]["ci_high"] for p in pts], alpha=0.2
            )
        ax.set_xlabel("step")
        ax.set_ylabel("pass@1 (greedy)")
        ax.set_title("in-loop CRUXEval subset (95% CI)")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out_dir / "inloop_cruxeval.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    indist = [
        (s["step"], s["metrics"]["eval_indist"])
        for s in steps
        if (s.get("metrics") or {}).get("eval_indist")
    ]
    if indist:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for tt in ("deduction", "abduction", "induction"):
            pts = [(step, e[tt]) for step, e in indist if tt in e]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.plot(xs, [p[1]["score"] for p in pts], marker="o", label=tt)
            ax.fill_between(
                xs, [p[1]["ci_low"] for p in pts], [p[1]["ci_high"] for p in pts], alpha=0.2
            )
        ax.set_xlabel("step")
        ax.set_ylabel("pass@1 (greedy)")
        ax.set_title("in-loop held-out set (in-distribution, 95% CI)")
        ax.legend()
        ax.grid(alpha=0.3)
        path = out_dir / "inloop_indist.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def compare(before: Path, after: Path, *, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Paired comparison of two per-problem result files (pass@1 per problem)."""
    b = {r["id"]: float(r["pass@1"]) for r in load_results(before)}
    a = {r["id"]: float(r["pass@1"]) for r in load_results(after)}
    ids = [i for i in b if i in a]
    if not ids:
        raise ValueError(f"{before} and {after} share no problems")
    xb = [b[i] for i in ids]
    xa = [a[i] for i in ids]
    ci_b = bootstrap_ci(xb, seed=seed, resamples=resamples)
    ci_a = bootstrap_ci(xa, seed=seed, resamples=resamples)
    diff = paired_bootstrap_diff(xa, xb, seed=seed, resamples=resamples)
    if diff.low > 0:
        verdict = "gain"
    elif diff.high < 0:
        verdict = "loss"
    else:
        verdict = "no change (CI contains 0)"
    return {
        "problems": len(ids),
        "before": ci_b.as_dict(),
        "after": ci_a.as_dict(),
        "diff": diff.as_dict(),
        "verdict": verdict,
    }


def _bare(text: str) -> str:
    # "2." and "2" are the same answer to the grader; spacing inside a tuple does not matter
    return text.strip().rstrip(".").replace(" ", "")


def input_echo(heldout: Path, results: Path) -> dict[str, float]:
    """Share of the answers in `results` equal to their task's (first) input, and the share of
    the held-out tasks whose output equals their input, the rate at which echoing is right.
    Result ids are "<task type>/<line of the held-out file>" (datasets.load_indist)."""
    tasks = {
        n: json.loads(line)
        for n, line in enumerate(heldout.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip()
    }
    echoed = answers = 0
    for row in load_results(results):
        task = tasks[int(str(row["id"]).rsplit("/", 1)[1])]
        given = _bare(task["inputs"][0])
        answers += len(row["answers"])
        echoed += sum(_bare(a) == given for a in row["answers"])
    if not answers:
        raise ValueError(f"{results} holds no answers")
    identity = sum(_bare(t["inputs"][0]) == _bare(t["outputs"][0]) for t in tasks.values())
    return {"answers": answers, "echo_share": echoed / answers, "task_share": identity / len(tasks)}


def markdown_row(name: str, c: dict[str, Any]) -> str:
    def fmt(d: dict[str, Any]) -> str:
        return f"{d['mean']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"

    return (
        f"| {name} | {c['problems']} | {fmt(c['before'])} | {fmt(c['after'])} | "
        f"{c['diff']['mean']:+.3f} [{c['diff']['ci_low']:+.3f}, {c['diff']['ci_high']:+.3f}] | "
        f"{c['verdict']} |"
    )


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "curves":
        metrics = json.loads(Path(argv[1]).read_text())
        for path in plot_curves(metrics, Path(argv[2])):
            print(path)
        return 0
    if len(argv) >= 3 and argv[0] == "compare" and len(argv) % 2 == 1:
        print("| benchmark | n | before | after | after - before (paired 95% CI) | reading |")
        print("|---|---|---|---|---|---|")
        for before, after in zip(argv[1::2], argv[2::2], strict=True):
            c = compare(Path(before), Path(after))
            name = Path(after).name.split(".")[1] if "." in Path(after).name else after
            print(markdown_row(name, c))
        return 0
    if len(argv) >= 3 and argv[0] == "echo":
        for results in argv[2:]:
            e = input_echo(Path(argv[1]), Path(results))
            print(
                f"{results}: {e['echo_share']:.3f} of {e['answers']:.0f} answers repeat the "
                f"input; {e['task_share']:.3f} of the held-out tasks output their input"
            )
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

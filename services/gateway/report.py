"""The end-of-run report: PNG plots of rewards and rates per task type and role over steps, a
summary table (also printed by the CLI), and the raw metrics as JSON, in one folder."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.pyplot as plt

TASK_TYPES = ("deduction", "abduction", "induction")
ROLES = ("propose", "solve")
# (metric, which roles report it, axis label)
PLOTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("reward_mean", ROLES, "mean reward"),
    ("valid_rate", ("propose",), "valid-proposal rate"),
    ("solve_rate", ROLES, "solve rate"),
    ("learnability", ("propose",), "learnability"),
    ("format_error_rate", ROLES, "format-error rate"),
    ("answer_closed_rate", ROLES, "answers closed by the service"),
    ("echo_answer_share", ("solve",), "answers that copy the prompt (input echo)"),
)


def series(metrics: dict[str, Any]) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
    """{(metric, task_type, role): [(step, value), ...]} from the API's run metrics."""
    out: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    for row in metrics.get("groups", []):
        values = {**(row.get("extra") or {}), **row}
        for name, _, _ in PLOTS:
            value = values.get(name)
            if value is not None:
                out[(name, row["task_type"], row["role"])].append((int(row["step"]), float(value)))
    for points in out.values():
        points.sort()
    return out


def summary_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task type x role: first and last step's values of the main metrics."""
    data = series(metrics)
    rows = []
    for tt in TASK_TYPES:
        for role in ROLES:
            row: dict[str, Any] = {"group": f"{tt}/{role}"}
            for name, roles, _ in PLOTS:
                points = data.get((name, tt, role), [])
                if role in roles and points:
                    row[name] = (points[0][1], points[-1][1])
            rows.append(row)
    return rows


def write_report(metrics: dict[str, Any], out_dir: Path, *, title: str = "AZR run") -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = series(metrics)
    images = []
    for name, roles, label in PLOTS:
        fig, axes = plt.subplots(1, len(roles), figsize=(5.5 * len(roles), 3.6), squeeze=False)
        for ax, role in zip(axes[0], roles, strict=True):
            for tt in TASK_TYPES:
                points = data.get((name, tt, role), [])
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker="o", label=tt)
            ax.set_title(f"{label} ({role})")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        images.append(path.name)
    steps = metrics.get("steps", [])
    timing = _timing_plot(steps, out_dir)
    if timing:
        images.append(timing)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    lines = [f"# {title}", "", f"Steps recorded: {len(steps)}", ""]
    lines += ["| group | " + " | ".join(n for n, _, _ in PLOTS) + " |"]
    lines += ["|---" * (len(PLOTS) + 1) + "|"]
    for row in summary_rows(metrics):
        cells = [_cell(row.get(name)) for name, _, _ in PLOTS]
        lines.append(f"| {row['group']} | " + " | ".join(cells) + " |")
    flags = [f for s in steps for f in (s.get("metrics") or {}).get("flags", [])]
    if flags:
        lines += ["", "Reward-hacking flags raised during the run:", ""]
        lines += [f"- {f}" for f in sorted(set(flags))]
    lines += ["", *[f"![{img}]({img})" for img in images], ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _cell(value: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    first, last = value
    return f"{first:.2f} → {last:.2f}"


def _timing_plot(steps: list[dict[str, Any]], out_dir: Path) -> str | None:
    phases = sorted({p for s in steps for p in (s.get("timings") or {})})
    if not phases:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = [int(s["step"]) for s in steps]
    bottom = [0.0] * len(steps)
    for phase in phases:
        ys = [float((s.get("timings") or {}).get(phase, 0.0)) for s in steps]
        ax.bar(xs, ys, bottom=bottom, label=phase)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set_title("seconds per phase")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "timings.png", dpi=100)
    plt.close(fig)
    return "timings.png"

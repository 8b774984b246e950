"""`azr up` (the whole local stack) and `azr run` (start a run on a gateway and follow it).

At the end of a followed run: a summary table on the terminal and a report with plots in
`<data_dir>/reports/run-<id>/`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import typer

TERMINAL = ("finished", "failed", "stopped")


def _overrides(sets: list[str] | None = None, **values: Any) -> dict[str, Any]:
    """The run's loop settings: the named options given, then every `--set key=value`."""
    out = {k: v for k, v in values.items() if v is not None}
    out.update(parse_sets(sets or []))
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs of loop settings; a value is read as JSON where it parses (4, 0.5,
    true, ["deduction"]) and kept as text where it does not. The gateway checks names and
    ranges."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


SET_HELP = "any loop setting as key=value (e.g. solver_samples=4); repeatable"


def start_run(gateway: str, token: str, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    import httpx

    resp = httpx.post(
        f"{gateway}/v1/runs",
        json={"name": name, "settings": settings},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if resp.status_code >= 400:
        raise typer.BadParameter(f"the gateway refused the run ({resp.status_code}): {resp.text}")
    run: dict[str, Any] = resp.json()
    return run


def follow(
    gateway: str, run_id: int, steps: int, poll_s: float = 2.0, max_failures: int = 60
) -> dict[str, Any]:
    """Progress bars over the seeding stage (step 0) and the run's steps until it finishes,
    fails or stops. Up to ``max_failures`` requests in a row may fail to reach the gateway."""
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with (
        httpx.Client(base_url=gateway, timeout=30) as client,
        Progress(
            TextColumn("[bold]run {task.fields[run]}[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[unit]} {task.completed:.0f}/{task.total:.0f}"),
            TimeElapsedColumn(),
        ) as bar,
    ):
        seeding = None
        task = bar.add_task("starting", total=steps, run=run_id, unit="step")
        failures = 0
        while True:
            try:
                run = client.get(f"/v1/runs/{run_id}").json()
                metrics = client.get(f"/v1/runs/{run_id}/metrics").json()
                failures = 0
            except httpx.TransportError as exc:
                # Watching must never end the run: a keep-alive connection the server closed
                # (or a gateway busy for a moment) is retried; only a gateway gone for good ends
                # the watch.
                failures += 1
                if failures > max_failures:
                    raise
                bar.console.print(f"gateway did not answer ({exc!r}); retrying")
                time.sleep(poll_s)
                continue
            seed = seeding_progress(metrics)
            if seed is not None:
                if seeding is None:
                    seeding = bar.add_task("seeding", total=seed[1], run=run_id, unit="tasks")
                bar.update(seeding, completed=seed[0], description=seed[2])
            done = sum(1 for s in metrics.get("steps", []) if int(s["step"]) >= 1)
            bar.update(task, completed=done, description=_describe(run, metrics))
            if run["status"] in TERMINAL:
                final: dict[str, Any] = run
                return final
            time.sleep(poll_s)


def seeding_progress(metrics: dict[str, Any]) -> tuple[int, int, str] | None:
    """(tasks stored, tasks wanted, a description) of the seeding stage, from step 0's row."""
    row = next((s for s in metrics.get("steps", []) if int(s["step"]) == 0), None)
    seed = ((row or {}).get("metrics") or {}).get("seeding")
    if not seed:
        return None
    target, held_target = int(seed["target"]), int(seed["heldout_target"])
    buffers, held = seed.get("buffers", {}), seed.get("heldout", {})
    wanted = (target + held_target) * max(1, len(buffers))
    stored = sum(min(int(n), target) for n in buffers.values()) + sum(
        min(int(n), held_target) for n in held.values()
    )
    parts = [f"{tt[:3]} {buffers.get(tt, 0)}+{held.get(tt, 0)}" for tt in buffers]
    state = "done" if seed.get("done") else f"round {seed['rounds']}/{seed['max_rounds']}"
    return min(stored, wanted), wanted, f"seeding {state} (buffer+held-out: {', '.join(parts)})"


def _describe(run: dict[str, Any], metrics: dict[str, Any]) -> str:
    steps = [s for s in metrics.get("steps") or [] if int(s["step"]) >= 1]
    if not steps:
        return str(run["status"])
    last = steps[-1].get("metrics") or {}
    groups = last.get("groups") or {}
    parts = []
    for tt in ("deduction", "abduction", "induction"):
        g = groups.get(f"{tt}/propose") or {}
        s = groups.get(f"{tt}/solve") or {}
        parts.append(
            f"{tt[:3]} valid {g.get('valid_rate', 0):.0%} solve {s.get('solve_rate', 0):.0%}"
        )
    return f"{run['status']} | " + " | ".join(parts)


def summary_console() -> Any:
    """The console for the end-of-run summary. Writing to a file or a pipe, rich assumes 80
    columns and cuts every cell to "0.00→…"; there nothing wraps, so the table gets its
    natural width."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=400)
    return console


def print_summary(run: dict[str, Any], metrics: dict[str, Any], console: Any = None) -> None:
    """The summary table (first → last step per task x role) and the totals line."""
    from rich.table import Table

    from services.gateway.report import PLOTS, summary_rows

    console = console or summary_console()
    table = Table(title=f"run {run['id']} ({run['status']}): first → last step")
    short = {
        "reward_mean": "reward",
        "valid_rate": "valid",
        "solve_rate": "solved",
        "learnability": "learnab.",
        "format_error_rate": "fmt err",
        "answer_closed_rate": "closed",
        "echo_answer_share": "echo",
    }
    table.add_column("task/role", no_wrap=True)
    for name, _, _ in PLOTS:
        table.add_column(short.get(name, name), no_wrap=True)
    for row in summary_rows(metrics):
        table.add_row(
            row["group"],
            *[f"{row[n][0]:.2f}→{row[n][1]:.2f}" if n in row else "-" for n, _, _ in PLOTS],
        )
    console.print(table)
    steps = [s for s in metrics.get("steps") or [] if int(s["step"]) >= 1]
    if steps:
        last = steps[-1].get("metrics") or {}
        tokens = sum((s.get("metrics") or {}).get("tokens_generated", 0) for s in steps)
        console.print(
            f"weights version {last.get('weight_version')}, {tokens:.0f} tokens generated, "
            f"buffers {metrics.get('buffers')}"
        )
    seed = seeding_progress(metrics)
    if seed is not None:
        console.print(seed[2])


def finish(gateway: str, run: dict[str, Any], data_dir: Path) -> Path:
    """Print the summary table and write the report; returns the report file."""
    import httpx

    from services.gateway.report import write_report

    metrics = httpx.get(f"{gateway}/v1/runs/{run['id']}/metrics", timeout=60).json()
    console = summary_console()
    print_summary(run, metrics, console)
    if run.get("error"):
        console.print(f"[red]run failed: {run['error']}[/]")
    report = write_report(metrics, data_dir / "reports" / f"run-{run['id']}", title=run["name"])
    console.print(f"report: {report}")
    return report


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        gateway: str | None = typer.Option(None, help="gateway URL (default from settings)"),
        name: str = typer.Option("self-play", help="run name"),
        steps: int | None = typer.Option(None, help="self-play steps"),
        batch_size: int | None = typer.Option(None, help="sequences per task x role per step"),
        n_rollouts: int | None = typer.Option(None, help="learnability rollouts per proposal"),
        k_references: int | None = typer.Option(None),
        induction_inputs: int | None = typer.Option(None),
        max_tokens: int | None = typer.Option(None),
        temperature: float | None = typer.Option(None),
        trivial_reward: float | None = typer.Option(None, help="-0.5 (code) or 0 (paper)"),
        mode: str | None = typer.Option(None, help="sync | async"),
        max_staleness: int | None = typer.Option(None),
        seed: int | None = typer.Option(None),
        seed_file: Path | None = typer.Option(None, help="seed tasks (JSONL) instead of identity"),
        seed_tasks_per_type: int | None = typer.Option(
            None, help="seeding stage: tasks per buffer before step 1 (0: skip)"
        ),
        heldout_tasks_per_type: int | None = typer.Option(
            None, help="seeding stage: held-out in-distribution tasks per task type"
        ),
        seed_batch_size: int | None = typer.Option(None, help="proposals per type per round"),
        seed_max_rounds: int | None = typer.Option(None, help="cap on seeding rounds"),
        indist_eval_every: int | None = typer.Option(
            None, help="solve the held-out set every N steps (0: never)"
        ),
        eval_every: int | None = typer.Option(None, help="CRUXEval subset every N steps"),
        lr: float | None = typer.Option(None, help="learning rate of this run's updates"),
        entropy_coef: float | None = typer.Option(None, help="entropy bonus of this run"),
        sets: list[str] = typer.Option([], "--set", help=SET_HELP),
        follow_run: bool = typer.Option(True, "--follow/--no-follow"),
    ) -> None:
        """Start a self-play run on a running gateway and follow it to the end."""
        from azr.settings import get_settings

        settings = get_settings()
        url = gateway or f"http://{settings.gateway_host}:{settings.gateway_port}"
        overrides = _overrides(
            steps=steps,
            batch_size=batch_size,
            n_rollouts=n_rollouts,
            k_references=k_references,
            induction_inputs=induction_inputs,
            max_tokens=max_tokens,
            temperature=temperature,
            trivial_reward=trivial_reward,
            mode=mode,
            max_staleness=max_staleness,
            seed=seed,
            seed_tasks_per_type=seed_tasks_per_type,
            heldout_tasks_per_type=heldout_tasks_per_type,
            seed_batch_size=seed_batch_size,
            seed_max_rounds=seed_max_rounds,
            indist_eval_every=indist_eval_every,
            eval_every=eval_every,
            lr=lr,
            entropy_coef=entropy_coef,
            sets=sets,
        )
        if seed_file is not None:
            overrides["seed_file"] = str(seed_file.resolve())
        _run_and_report(url, settings, name, overrides, follow_run)

    @app.command()
    def up(
        start_run_: bool = typer.Option(False, "--run", help="start a run once the stack is up"),
        steps: int | None = typer.Option(None),
        batch_size: int | None = typer.Option(None),
        n_rollouts: int | None = typer.Option(None),
        max_tokens: int | None = typer.Option(None),
        induction_inputs: int | None = typer.Option(None),
        k_references: int | None = typer.Option(None),
        temperature: float | None = typer.Option(None),
        mode: str | None = typer.Option(None, help="sync | async"),
        max_staleness: int | None = typer.Option(None),
        trivial_reward: float | None = typer.Option(None, help="-0.5 (code) or 0 (paper)"),
        seed_tasks_per_type: int | None = typer.Option(
            None, help="seeding stage: tasks per buffer before step 1 (0: skip)"
        ),
        heldout_tasks_per_type: int | None = typer.Option(
            None, help="seeding stage: held-out in-distribution tasks per task type"
        ),
        seed_batch_size: int | None = typer.Option(None, help="proposals per type per round"),
        seed_max_rounds: int | None = typer.Option(None, help="cap on seeding rounds"),
        indist_eval_every: int | None = typer.Option(
            None, help="solve the held-out set every N steps (0: never)"
        ),
        eval_every: int | None = typer.Option(None, help="CRUXEval subset every N steps"),
        lr: float | None = typer.Option(None, help="learning rate of this run's updates"),
        entropy_coef: float | None = typer.Option(None, help="entropy bonus of this run"),
        sets: list[str] = typer.Option([], "--set", help=SET_HELP),
        engine: str | None = typer.Option(None, help="inference engine: vllm | transformers"),
        keep: bool = typer.Option(False, help="with --run: keep the stack up afterwards"),
    ) -> None:
        """Start the local stack (Redis, executor, inference, trainer, gateway), supervised."""
        from azr.settings import get_settings
        from services.gateway.supervisor import Supervisor

        settings = get_settings()
        extra = {"AZR_INFERENCE__ENGINE": engine} if engine else {}
        if engine:
            settings.inference.engine = engine  # type: ignore[assignment]
        sup = Supervisor(settings, extra_env=extra)
        stop = threading.Event()

        def _interrupt(*_: object) -> None:
            # also breaks out of a start-up wait or a followed run; `finally` stops the stack
            stop.set()
            raise KeyboardInterrupt

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt)
        typer.echo(f"starting the stack; logs in {sup.data_dir / 'logs'}")
        try:
            sup.start()
            for name, child in sup.children.items():
                typer.echo(f"  {name:<10} {child.url}")
            if start_run_:
                overrides = _overrides(
                    steps=steps,
                    batch_size=batch_size,
                    n_rollouts=n_rollouts,
                    max_tokens=max_tokens,
                    induction_inputs=induction_inputs,
                    k_references=k_references,
                    temperature=temperature,
                    mode=mode,
                    max_staleness=max_staleness,
                    trivial_reward=trivial_reward,
                    seed_tasks_per_type=seed_tasks_per_type,
                    heldout_tasks_per_type=heldout_tasks_per_type,
                    seed_batch_size=seed_batch_size,
                    seed_max_rounds=seed_max_rounds,
                    indist_eval_every=indist_eval_every,
                    eval_every=eval_every,
                    lr=lr,
                    entropy_coef=entropy_coef,
                    sets=sets,
                )
                _run_and_report(sup.gateway_url, settings, "self-play", overrides, True)
                if not keep:
                    return
            typer.echo("stack is up; Ctrl-C stops it")
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            typer.echo("interrupted")
        finally:
            typer.echo("stopping the stack")
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the shutdown finish
            sup.stop()


def _run_and_report(
    url: str, settings: Any, name: str, overrides: dict[str, Any], follow_run: bool
) -> None:
    run = start_run(url, settings.api_token, name, overrides)
    typer.echo(f"run {run['id']} started: {url}/v1/runs/{run['id']} (dashboard: {url}/)")
    if not follow_run:
        return
    total = int(run["settings"].get("steps", overrides.get("steps", 0)))
    final = follow(url, int(run["id"]), total)
    finish(url, final, Path(settings.data_dir))
    if final["status"] != "finished":
        raise typer.Exit(1)

"""The `azr` command line. Heavy modules are imported inside commands so `azr --help` is quick."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Absolute Zero self-play as services.", no_args_is_help=True)

# `azr serve NAME`: each service module exposes `serve(host, port, role)`.
SERVICE_MODULES = {
    "executor": "services.executor.main",
    "executor-worker": "services.executor.main",
    "proposer": "services.inference.main",
    "solver": "services.inference.main",
    "inference": "services.inference.main",
    "trainer": "services.trainer.main",
    "gateway": "services.gateway.main",
}


@app.command()
def serve(
    service: str = typer.Argument(..., help=" | ".join(SERVICE_MODULES)),
    host: str | None = typer.Option(None, help="bind address (default from settings)"),
    port: int | None = typer.Option(None, help="port (default from settings)"),
) -> None:
    """Start one service in the foreground."""
    if service not in SERVICE_MODULES:
        raise typer.BadParameter(
            f"unknown service {service!r}; choose one of {list(SERVICE_MODULES)}"
        )
    from azr.common.processes import sigterm_exits

    sigterm_exits()  # so each service's cleanup (workers, engines, embedded Redis) runs
    module = importlib.import_module(SERVICE_MODULES[service])
    module.serve(host=host, port=port, role=service)


@app.command()
def demo() -> None:
    """Run the executor demo: validate and verify a few programs in the sandbox."""
    from services.executor.demo import main

    main()


# `azr model ...`: the bundled default model.
model_app = typer.Typer(help="The served model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("prepare")
def model_prepare() -> None:
    """Convert the bundled SmolLM2 GGUF to safetensors once (cached and hash-checked)."""
    from azr.common.model import prepare_default_model, tokenizer_dir
    from azr.settings import get_settings

    settings = get_settings()
    tokenizer_dir(settings.data_dir)
    typer.echo(f"default model: {prepare_default_model(settings.data_dir)}")


@app.command("eval")
def eval_(
    model: str = typer.Argument(
        "base", help="`base` (bundled SmolLM2), `latest`, a checkpoint version number, or an HF dir"
    ),
    bench: list[str] = typer.Option(
        ["cruxeval-o"],
        "--bench",
        "-b",
        help="cruxeval-o | cruxeval-i | humaneval | indist (the run's held-out set: "
        "indist-deduction, indist-abduction, indist-induction) (repeatable)",
    ),
    limit: int | None = typer.Option(None, help="first N problems only"),
    samples: int = typer.Option(1, help="1: greedy pass@1; k > 1: sampled, pass@1..pass@k"),
    engine: str | None = typer.Option(None, help="vllm | transformers (default from settings)"),
    out: str | None = typer.Option(None, "--out", help="output folder (default <data_dir>/eval)"),
    executor_url: str | None = typer.Option(
        None, help="a running executor; default: start one for this evaluation"
    ),
    max_tokens: int | None = typer.Option(None, help="new tokens per answer"),
    batch_size: int = typer.Option(16, help="prompts per engine call"),
    heldout: str | None = typer.Option(
        None, help="indist: a held-out JSONL (default: the newest run's, <data_dir>/runs/<id>)"
    ),
    baseline: str | None = typer.Option(
        None,
        help="compare with this model label's results in the output folder (e.g. base): "
        "paired bootstrap 95% CI of the difference per bench",
    ),
) -> None:
    """Evaluate a model on held-out benchmarks (answers graded in the executor sandbox)."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress

    from azr.settings import get_settings
    from services.evaluation.datasets import Bench, DatasetError, parse_benches
    from services.evaluation.engines import ModelNotFound
    from services.evaluation.run import EvalRequest, compare_to, print_table, run_eval

    try:
        benches = parse_benches(bench)
    except ValueError as exc:
        names = [b.value for b in Bench] + ["indist"]
        raise typer.BadParameter(f"{exc}; choose from {names}") from exc
    if engine is not None and engine not in ("vllm", "transformers"):
        raise typer.BadParameter(f"unknown engine {engine!r}; choose vllm or transformers")
    if samples < 1:
        raise typer.BadParameter("--samples must be at least 1")
    req = EvalRequest(
        model=model,
        benches=benches,
        limit=limit,
        samples=samples,
        engine=engine,
        out_dir=Path(out) if out else None,
        executor_url=executor_url,
        max_tokens=max_tokens,
        batch_size=batch_size,
        heldout=Path(heldout) if heldout else None,
    )
    import signal

    # SIGTERM (timeout, a supervisor) unwinds like Ctrl-C, so the executor worker, Redis and
    # engine the evaluation started are stopped rather than orphaned.
    def _terminate(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    console = Console()
    with Progress(console=console, transient=True) as bar:
        tasks: dict[str, object] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)  # type: ignore[arg-type]

        try:
            summaries = run_eval(req, get_settings(), progress=progress)
        except (ModelNotFound, DatasetError) as exc:
            raise typer.BadParameter(str(exc)) from exc
    console.print(print_table(summaries), markup=False, highlight=False)
    out_dir = Path(out) if out else get_settings().data_dir / "eval"
    if baseline:
        console.print(compare_to(baseline, summaries, out_dir), markup=False, highlight=False)
    console.print(f"per-problem JSONL and summaries in {out_dir}", markup=False)


# `azr up` (the local stack) and `azr run` (start and follow a run): the gateway's loop CLI.
def _register_loop_commands() -> None:
    from services.gateway.cli_run import register

    register(app)


_register_loop_commands()


# `azr tasks ...` and `azr weights ...` talk to the gateway's REST API.
from services.gateway.cli_tasks import tasks_app, weights_app  # noqa: E402

app.add_typer(tasks_app, name="tasks")
app.add_typer(weights_app, name="weights")

if __name__ == "__main__":
    app()

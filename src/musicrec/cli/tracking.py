"""Commands for tracking, the registry and experiments: ``tracking``, ``promote``, ``rollback``,
``experiments`` and ``tune``. The stages live in :mod:`musicrec.pipeline` (``grid``, ``tune``),
observed by :mod:`musicrec.tracking` (observer, registry, report)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import console, friendly_errors

app = typer.Typer()  # this module's commands; musicrec.cli merges them

if TYPE_CHECKING:
    from musicrec.tracking.registry import Decision


tracking_app = typer.Typer(help="MLflow tracking store and model registry.", no_args_is_help=True)
experiments_app = typer.Typer(help="Grids of tracked runs and their reports.", no_args_is_help=True)
app.add_typer(tracking_app, name="tracking")
app.add_typer(experiments_app, name="experiments")

NameOption = Annotated[
    str | None,
    typer.Option(
        "--name", help="Registered model name (default: musicrec, or a store's musicrec-als)."
    ),
]


def _name(name: str | None) -> str:
    """``--name``, else the store's default registered model."""
    from musicrec.tracking import default_model_name

    return name or default_model_name()


@tracking_app.command("ui")
@friendly_errors
def tracking_ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Run `mlflow ui` on this project's store ($MLFLOW_TRACKING_URI or ./mlflow.db)."""
    from musicrec.errors import ConfigError
    from musicrec.tracking import display_uri, tracking_uri, ui_command

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    uri = tracking_uri()
    console.print(
        f"MLflow UI for {display_uri(uri)} on http://{host}:{port} (Ctrl-C stops it)",
        soft_wrap=True,
    )
    command = ui_command(uri, host, port)
    os.execv(command[0], command)  # the UI replaces this process: signals reach it directly


@tracking_app.command("models")
@friendly_errors
def tracking_models(name: NameOption = None) -> None:
    """List the registered versions of a model with their gate metric and aliases."""
    from musicrec.tracking import display_uri, get_client, mlflow_errors
    from musicrec.tracking.registry import get_version, version_info

    client = get_client()
    name = _name(name)
    with mlflow_errors(f"listing {name}"):
        latest = int(get_version(client, name, "latest").version)
        versions = [client.get_model_version(name, str(v)) for v in range(1, latest + 1)]
    table = Table(title=f"{name} · {display_uri(client.tracking_uri)}")
    for column in ("version", "ndcg@10", "dataset", "aliases", "previous champion", "run"):
        table.add_column(column)
    for mv in versions:
        info = version_info(client, mv)
        table.add_row(
            info.version,
            f"{info.ndcg:.4f}" if info.ndcg is not None else "-",
            info.fingerprint or "-",
            ", ".join(mv.aliases),
            mv.tags.get("previous_champion", ""),
            info.run_id or "",
        )
    Console().print(table)


def _print_decision(decision: Decision) -> None:
    out = Console()
    verb = "promoted" if decision.promoted else "kept"
    target = decision.candidate.version if decision.promoted else _champion(decision)
    from musicrec.pipeline.gate import GateResult

    if isinstance(decision.evidence, GateResult):
        from musicrec.cli.evaluation import gate_table

        out.print(gate_table(decision.evidence, decision.candidate.version, _champion(decision)))
    out.print(
        f"{decision.name}: {verb} champion = version {target} · {decision.reason}", soft_wrap=True
    )


def _champion(decision: Decision) -> str:
    return decision.champion.version if decision.champion else "(none)"


@app.command()
@friendly_errors
def promote(
    name: NameOption = None,
    version: Annotated[str, typer.Option(help="Version number, or `latest`.")] = "latest",
    model: Annotated[
        Path | None,
        typer.Option(help="A local model dir instead of --version (registered first if needed)."),
    ] = None,
    gate: Annotated[
        str, typer.Option(help="superiority (lower bound > margin) | non-inferiority (> -delta).")
    ] = "superiority",
    margin: Annotated[
        float | None, typer.Option(help="Superiority: NDCG@10 gain the lower bound must exceed.")
    ] = None,
    delta: Annotated[
        float | None, typer.Option(help="Non-inferiority: NDCG@10 loss the lower bound may reach.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Score both versions on this dataset (default: their logged evaluations)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of resamples and permutations.")] = 0,
    force: Annotated[bool, typer.Option(help="Move the alias even if the gate refuses.")] = False,
    allow_refusal: Annotated[
        bool, typer.Option(help="Exit 0 when the gate refuses (the reason is still printed).")
    ] = False,
) -> None:
    """Make a version the champion if it passes the paired gate against the champion.

    Both versions' per-user values on the same test users: the 95 % interval of the NDCG@10
    difference decides, guardrails on coverage@10, novelty@10 and every segment can veto.
    Exit code 0: the version is champion (promoted now or already); 1: the gate refused.
    """
    from musicrec.loop.gating import paired_judge
    from musicrec.pipeline.gate import gate_config
    from musicrec.tracking import register_and_promote
    from musicrec.tracking.publish import require_artifact
    from musicrec.tracking.registry import promote as run_promote

    config = gate_config(gate, delta=delta, margin=margin, seed=seed)  # before the store opens
    if model is not None:
        require_artifact(model)
    name = _name(name)
    judge = paired_judge(name, config, data)
    if model is not None:
        decision = register_and_promote(model, name, margin=margin, force=force, judge=judge)
    else:
        decision = run_promote(name, version, margin, force, judge=judge)
    _print_decision(decision)
    if not decision.is_champion and not allow_refusal:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def rollback(name: NameOption = None) -> None:
    """Move the champion alias back to the version it replaced."""
    from musicrec.tracking.registry import rollback as run_rollback

    decision = run_rollback(_name(name))
    Console().print(
        f"{decision.name}: champion = version {decision.candidate.version} · {decision.reason}"
    )


@experiments_app.command("grid")
@friendly_errors
def experiments_grid(
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    config: Annotated[Path, typer.Option(help="Grid YAML.")] = Path("configs/grid.yaml"),
    out: Annotated[Path, typer.Option(help="Directory for the models.")] = Path("artifacts/grid"),
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "musicrec-grid",
    register: Annotated[
        bool, typer.Option(help="Also register every model as a version of --name.")
    ] = False,
    name: NameOption = None,
) -> None:
    """Train and evaluate each grid config, one MLflow run each under a parent run."""
    from musicrec.pipeline.grid import load_grid, run_grid
    from musicrec.tracking import MlflowObserver

    configs = load_grid(config)
    observer = MlflowObserver(
        experiment=experiment, run_name="grid", model_name=_name(name) if register else None
    )
    with console.status(f"training {len(configs)} configs"):
        runs = run_grid(data, configs, out, observer=observer)
    table = Table(title=f"grid run {observer.run_id} · experiment {experiment}")
    for column in ("factors", "iterations", "seconds", "ndcg@10", "popularity ndcg@10", "run"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run.config.factors),
            str(run.config.iterations),
            f"{run.train_seconds:.1f}",
            f"{run.metrics['ndcg@10']:.4f}",
            f"{run.metrics['popularity']['ndcg@10']:.4f}",
            run.run_id or "",
        )
    Console().print(table)


@experiments_app.command("report")
@friendly_errors
def experiments_report(
    out: Annotated[Path, typer.Option(help="Directory for <experiment>.csv/.md/.png.")],
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "musicrec",
    metric: Annotated[str, typer.Option(help="Run metric to compare.")] = "ndcg_at_10",
    parent: Annotated[
        str | None, typer.Option(help="Only children of this run id (`latest`: newest grid/tune).")
    ] = None,
) -> None:
    """Compare an experiment's runs: CSV, Markdown table and a metric-vs-time plot."""
    from musicrec.tracking.report import experiment_report

    files = experiment_report(experiment, out, metric=metric, parent_run_id=parent)
    Console().print(f"{files.runs} runs -> {files.csv}, {files.markdown}, {files.plot}")


@app.command()
@friendly_errors
def tune(
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    trials: Annotated[int | None, typer.Option(help="Number of trials.")] = 30,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    out: Annotated[Path, typer.Option(help="best.yaml, trials.csv, model/.")] = Path(
        "artifacts/tune"
    ),
    config: Annotated[Path | None, typer.Option(help="Starting config (trial 0).")] = None,
    kinds: Annotated[
        str | None,
        typer.Option(help="Model kinds to search, e.g. als,ease,itemknn,rp3beta (default: als)."),
    ] = None,
    blend: Annotated[
        bool, typer.Option(help="Also try blends of the two best kinds (several kinds only).")
    ] = True,
    seed: Annotated[int, typer.Option(help="Sampler and validation-split seed.")] = 0,
    valid_fraction: Annotated[
        float, typer.Option(help="Train rows held out per user (datasets without a valid part).")
    ] = 0.2,
    prune: Annotated[bool, typer.Option(help="Median pruning at sweep checkpoints.")] = True,
    final: Annotated[bool, typer.Option(help="Train the best config, evaluate on test.")] = True,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "musicrec-tune",
) -> None:
    """Optuna TPE search on the validation part (or a split of train); test only the best."""
    import optuna

    from musicrec.config import TrainConfig
    from musicrec.pipeline.tune import tune as run_tune
    from musicrec.tracking import MlflowObserver

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = TrainConfig.from_yaml(config) if config else TrainConfig()

    def on_trial(trial: optuna.trial.FrozenTrial, best: float | None) -> None:
        value = f"{trial.value:.4f}" if trial.value is not None else "-"
        best_text = f"{best:.4f}" if best is not None else "-"
        params = dict(trial.user_attrs.get("config", {}))
        kind = params.pop("kind", "als")
        shown = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in params.items()
            if k not in ("seed", "engine", "use_gpu", "bm25_k1", "bm25_b")
        )
        console.print(
            f"trial {trial.user_attrs.get('number', trial.number):>3} "
            f"{trial.state.name.lower():<8} val ndcg@10 {value} "
            f"(best {best_text}) · {kind} {shown}",
            highlight=False,
            soft_wrap=True,
        )

    result = run_tune(
        data,
        out,
        trials,
        timeout,
        base=base,
        kinds=kinds,
        blend=blend,
        seed=seed,
        valid_fraction=valid_fraction,
        prune=prune,
        final=final,
        observer=MlflowObserver(experiment=experiment, run_name="tune"),
        on_trial=on_trial,
    )
    out_console = Console()
    baseline = f"{result.baseline_value:.4f}" if result.baseline_value is not None else "-"
    out_console.print(
        f"{result.n_complete} complete, {result.n_pruned} pruned · best: {result.best.kind}, "
        f"validation ndcg@10 {result.best_value:.4f} (starting config {baseline}) · "
        f"run {result.run_id}"
    )
    if result.test is not None:
        out_console.print(
            f"best config on test: ndcg@10 {result.test['ndcg@10']:.4f} "
            f"(popularity {result.test['popularity']['ndcg@10']:.4f})"
        )
    out_console.print(f"musicrec train --config {result.best_config_path} ...")

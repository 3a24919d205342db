"""``musicrec train`` and ``musicrec evaluate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from musicrec.cli.common import console, friendly_errors
from musicrec.errors import ConfigError

if TYPE_CHECKING:
    from musicrec.config import TrainConfig
    from musicrec.tracking import MlflowObserver

app = typer.Typer()


@app.command()
@friendly_errors
def train(
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    out: Annotated[Path, typer.Option(help="Model artifact directory to write.")],
    config: Annotated[Path | None, typer.Option(help="YAML config (see configs/).")] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            help="als | ease | itemknn | rp3beta | dlae | blend, or a baseline: popularity | "
            "random (default: als)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="KEY=VALUE parameter of the kind (repeatable), e.g. -p l2=1000 -p "
            "similarity=bm25; blend parts as first.kind=ease.",
        ),
    ] = None,
    factors: Annotated[int | None, typer.Option(help="Latent factors.")] = None,
    regularization: Annotated[float | None, typer.Option(help="L2 regularization.")] = None,
    iterations: Annotated[int | None, typer.Option(help="ALS sweeps.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Confidence scale.")] = None,
    weighting: Annotated[str | None, typer.Option(help="none | log1p | bm25")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    engine: Annotated[
        str | None, typer.Option(help="implicit | spark (als, itemknn, rp3beta)")
    ] = None,
    spark_master: Annotated[str | None, typer.Option(help="Spark master URL.")] = None,
    spark_checkpoint_dir: Annotated[
        str | None, typer.Option(help="Spark ALS checkpoints; required on a cluster master.")
    ] = None,
    gpu: Annotated[bool | None, typer.Option("--gpu/--cpu", help="implicit's CUDA build.")] = None,
    track: Annotated[bool, typer.Option(help="Log to MLflow and register the model.")] = True,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "musicrec",
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name (default: musicrec).")
    ] = None,
) -> None:
    """Train a model (ALS by default) on a prepared dataset; write, track and register it."""
    from musicrec.config import TrainConfig, parse_params
    from musicrec.models.kinds import config_name
    from musicrec.pipeline.train import train as run_train

    base = TrainConfig.from_yaml(config) if config else TrainConfig()
    if kind is not None and kind != base.kind:
        base = TrainConfig.for_kind(kind)
    flags = {
        "factors": factors,
        "regularization": regularization,
        "iterations": iterations,
        "alpha": alpha,
        "weighting": weighting,
        "seed": seed,
        "engine": engine,
        "use_gpu": gpu,
    }
    cfg = base.override(**(parse_params(param or [], base) | _given(flags)))
    observer = _train_observer(cfg, experiment, model_name) if track else None
    result = run_train(
        data,
        out,
        cfg,
        show_progress=True,
        spark_master=spark_master,
        observer=observer,
        spark_checkpoint_dir=spark_checkpoint_dir,
    )
    if observer is not None:
        console.print(
            f"MLflow run {observer.run_id} · registered {observer.model_name} version "
            f"{observer.version}",
            highlight=False,
        )
    losses = [x for x in result.loss_history if x == x]  # NaN between loss evaluations
    loss = f", final loss {losses[-1]:.5f}" if losses else ""
    what = config_name(cfg)
    Console().print(f"trained {what} in {result.seconds:.1f}s{loss} -> {out}")


def _train_observer(cfg: TrainConfig, experiment: str, model_name: str | None) -> MlflowObserver:
    """The MLflow observer of a train run: registers under ``model_name`` or the default name."""
    from musicrec.models.kinds import config_name
    from musicrec.tracking import MlflowObserver, default_model_name, get_client

    client = get_client()
    name = model_name or default_model_name(client)
    return MlflowObserver(client, experiment, run_name=config_name(cfg), model_name=name)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user set (unset typer options are ``None``)."""
    return {k: v for k, v in options.items() if v is not None}


def _dialled(
    data: Path,
    diversity: float,
    discovery: float,
    familiar_share: float,
    max_per_tag: int | None,
    exclude_tags: list[str] | None,
    include_tags: list[str] | None,
) -> tuple[Any, Any]:
    """The dataset and the list dials ``evaluate`` was given for it."""
    from musicrec.data.dataset import Dataset
    from musicrec.pipeline.dials import dataset_dials

    dataset = Dataset.load(data)
    dials = dataset_dials(
        dataset.items,
        dataset.tags,
        diversity=diversity,
        discovery=discovery,
        familiar_share=familiar_share,
        max_per_tag=max_per_tag,
        exclude_tags=exclude_tags or (),
        include_tags=include_tags or (),
    )
    return dataset, dials


@app.command()
@friendly_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="Prepared dataset directory.")],
    model: Annotated[Path, typer.Option(help="Model artifact directory.")],
    k: Annotated[list[int] | None, typer.Option("--k", help="Cut-offs (repeatable).")] = None,
    baseline: Annotated[
        list[str] | None, typer.Option(help="popularity | random (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
    track: Annotated[bool, typer.Option(help="Log to the model's MLflow run.")] = True,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of a new run.")] = "musicrec",
    record: Annotated[
        bool, typer.Option(help="Store the metrics in the model's manifest.json.")
    ] = True,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples of test users for the intervals (0: none).")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    diversity: Annotated[float, typer.Option(help="List dial 0-1 (docs/dials.md).")] = 0.0,
    discovery: Annotated[float, typer.Option(help="List dial 0-1 (docs/dials.md).")] = 0.0,
    familiar_share: Annotated[float, typer.Option(help="List dial 0-1.")] = 0.0,
    max_per_tag: Annotated[int | None, typer.Option(help="List dial: cap per top tag.")] = None,
    exclude_tag: Annotated[
        list[str] | None, typer.Option(help="List dial: leave out this tag (repeatable).")
    ] = None,
    include_tag: Annotated[
        list[str] | None, typer.Option(help="List dial: only these tags (repeatable).")
    ] = None,
) -> None:
    """Evaluate a model on its dataset's test split against baselines; log to its MLflow run.

    Every metric comes with a 95 % interval from a seeded bootstrap over test users, overall
    and per segment (listeners by history size, test artists by popularity). With list dials
    the model's lists go through the rule chain first; the manifest and MLflow then keep the
    model's own metrics (nothing is recorded or logged).
    """
    from musicrec.cli.evaluation import metrics_table, segments_table
    from musicrec.fsutil import write_json_atomic
    from musicrec.pipeline.evaluate import evaluate_model
    from musicrec.pipeline.userscores import check_ks
    from musicrec.tracking import MlflowObserver

    ks = sorted(set(k or [10, 20]))
    if ks[0] < 1:
        raise ConfigError(f"--k must be at least 1, got {ks[0]}")
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {bootstrap}")
    if output is not None and output.is_dir():
        raise ConfigError(f"--output {output}: is a directory, expected a file path")
    dataset, dials = _dialled(
        data, diversity, discovery, familiar_share, max_per_tag, exclude_tag, include_tag
    )
    if not dials.neutral:
        track = record = False
    check_ks(ks, dataset.shape[1])  # before MLflow opens its store for a run
    observer = MlflowObserver(experiment=experiment) if track else None
    report = evaluate_model(
        dataset,
        model,
        ks,
        baselines=baseline or ["popularity"],
        show_progress=not as_json,
        record=record,
        observer=observer,
        bootstrap=bootstrap,
        seed=seed,
        dials=dials,
    )
    payload = report.to_dict()
    if output:
        write_json_atomic(output, payload)
    if observer is not None:
        console.print(f"logged to MLflow run {observer.run_id}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return
    out = Console()
    out.print(metrics_table(payload, ks))
    out.print(segments_table(report.segments, ks[0]))

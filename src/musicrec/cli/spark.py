"""``musicrec spark up|down|status``: a Spark standalone cluster on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from musicrec.cli.common import friendly_errors

app = typer.Typer()  # this module's commands; musicrec.cli merges them
spark_app = typer.Typer(
    help="A local Spark standalone cluster (master + workers from pyspark).", no_args_is_help=True
)
app.add_typer(spark_app, name="spark")

DirOption = Annotated[
    Path, typer.Option("--dir", help="Pid files, logs, work directories, cluster.json.")
]
DEFAULT_DIR = Path("artifacts/spark-cluster")


@spark_app.command("up")
@friendly_errors
def up(
    workers: Annotated[int, typer.Option(help="Workers to start.")] = 2,
    cores: Annotated[int, typer.Option(help="Cores each worker offers.")] = 1,
    memory: Annotated[str, typer.Option(help="Memory each worker offers (e.g. 2g).")] = "2g",
    host: Annotated[str, typer.Option(help="Address every daemon binds to.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Master port (0: any free port).")] = 7077,
    webui_port: Annotated[int, typer.Option(help="Master web UI port (0: any free).")] = 8080,
    directory: DirOption = DEFAULT_DIR,
) -> None:
    """Start a master and workers in the background; print the master URL, ports and files."""
    from musicrec.ops.spark_cluster import start_cluster

    cluster = start_cluster(
        directory,
        workers,
        cores=cores,
        memory=memory,
        host=host,
        port=port,
        webui_port=webui_port,
    )
    out = Console(soft_wrap=True)
    out.print(f"Spark master {cluster.master_url}  (web UI {cluster.webui_url})", highlight=False)
    for daemon in cluster.daemons:
        ports = f"port {daemon.port}, web UI {daemon.webui_port}"
        out.print(f"  {daemon.name:<9} pid {daemon.pid:<7} {ports}  log {daemon.log}")
    root = Path(cluster.directory)
    out.print(f"pid files in {root / 'pids'}", highlight=False)
    out.print(
        f"executors of {memory} per worker (else Spark's 1g):  "
        f"export SPARK_CONF_DIR={root / 'conf'}",
        highlight=False,
    )
    out.print(
        f"train on it:  musicrec train ... --engine spark --spark-master {cluster.master_url} "
        f"--spark-checkpoint-dir {root / 'checkpoints'}",
        highlight=False,
    )
    out.print(f"stop it:      musicrec spark down --dir {directory}", highlight=False)


@spark_app.command("down")
@friendly_errors
def down(directory: DirOption = DEFAULT_DIR) -> None:
    """Stop the cluster started from ``--dir`` (its executors too)."""
    from musicrec.ops.spark_cluster import stop_cluster

    stopped = stop_cluster(directory)
    if stopped:
        names = ", ".join(f"{d.name} (pid {d.pid})" for d in stopped)
        Console(soft_wrap=True).print(f"stopped {names}", highlight=False)
    else:
        Console(soft_wrap=True).print(f"no Spark daemon running from {directory}", highlight=False)


@spark_app.command("status")
@friendly_errors
def status(directory: DirOption = DEFAULT_DIR) -> None:
    """Which daemons of the cluster in ``--dir`` are running; exit 1 if none."""
    from musicrec.ops.spark_cluster import is_running, read_cluster, recorded_daemons

    cluster = read_cluster(directory)
    daemons = cluster.daemons if cluster else tuple(recorded_daemons(directory))
    if not daemons:
        Console(soft_wrap=True).print(f"no Spark cluster recorded in {directory}", highlight=False)
        raise typer.Exit(1)
    out = Console(soft_wrap=True)
    if cluster:
        out.print(
            f"Spark master {cluster.master_url}  (web UI {cluster.webui_url})", highlight=False
        )
    running = 0
    for daemon in daemons:
        state = "running" if is_running(daemon.pid) else "stopped"
        running += state == "running"
        out.print(f"  {daemon.name:<9} pid {daemon.pid:<7} {state}", highlight=False)
    if not running:
        raise typer.Exit(1)

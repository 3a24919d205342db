"""A Spark standalone cluster on this machine: one master and N workers from the installed pyspark.

``musicrec spark up`` and the cluster tests use it. Each daemon is started with pyspark's own
``bin/spark-class`` (so the cluster runs exactly the pip package's Spark version) in a session of
its own, bound to one address (loopback by default, through ``--host`` and ``SPARK_LOCAL_IP``).
Everything lives under one directory::

    cluster.json          master URL, web UI, ports and pids (written once all workers are up)
    pids/master.pid       one pid file per daemon, written the moment it is launched
    pids/worker-N.pid
    logs/master.log       each daemon's output
    logs/worker-N.log
    work/worker-N/        the worker's work directory (executor logs: app-*/*/stderr)
    spark-defaults.conf   properties the daemons read (the REST submission server is off)
    conf/                 for drivers (``SPARK_CONF_DIR``): the master URL, and executors sized
                          to the workers (Spark's default executor heap is 1 GiB)

:func:`stop_cluster` signals each daemon's whole process group (so a worker's executors go with
it), waits, and escalates to SIGKILL; it also finds the executors of a worker that was killed
before, through their process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from musicrec.errors import ConfigError, MusicrecError
from musicrec.fsutil import write_json_atomic

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STATE_FILE = "cluster.json"
# The master's REST submission server listens on a fixed port (6066) by default: off, so two
# clusters on one machine do not collide and nothing but the master's RPC port takes jobs.
PROPERTIES = {"spark.master.rest.enabled": "false"}
MASTER_URL = re.compile(r"Starting Spark master at (spark://\S+)")
T = TypeVar("T")
SERVICE_PORT = re.compile(r"Successfully started service '(\w+)' on port (\d+)")
MEMORY = re.compile(r"^[1-9]\d*[mMgG]$")


class SparkClusterError(MusicrecError):
    """The local Spark cluster could not be started, found or stopped."""


@dataclass(frozen=True)
class Daemon:
    """One master or worker JVM: its pid (a process-group leader), log and ports."""

    name: str
    pid: int
    log: str
    port: int = 0
    webui_port: int = 0


@dataclass(frozen=True)
class Cluster:
    directory: str
    host: str
    master_url: str
    webui_url: str
    master: Daemon
    workers: tuple[Daemon, ...] = field(default_factory=tuple)

    @property
    def daemons(self) -> tuple[Daemon, ...]:
        return (self.master, *self.workers)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Cluster:
        master = Daemon(**data["master"])  # type: ignore[arg-type]
        workers = tuple(Daemon(**w) for w in data["workers"])  # type: ignore[attr-defined]
        rest = {k: v for k, v in data.items() if k not in ("master", "workers")}
        return cls(master=master, workers=workers, **rest)  # type: ignore[arg-type]


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package."""
    try:
        import pyspark
    except ImportError as exc:
        raise ConfigError(
            "a Spark cluster needs pyspark: pip install 'musicrec[spark]' (and Java 17+)"
        ) from exc
    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").exists():
        raise ConfigError(f"{home}: pyspark has no bin/spark-class; reinstall pyspark")
    return home


def daemon_env(host: str) -> dict[str, str]:
    """The daemons' environment: pyspark's Spark, bound to ``host``, never daemonizing."""
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": host,
            "SPARK_NO_DAEMONIZE": "1",
        }
    )
    return env


def validate(workers: int, cores: int, memory: str, *ports: int) -> None:
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if cores < 1:
        raise ConfigError(f"--cores must be at least 1, got {cores}")
    if not MEMORY.match(memory):
        raise ConfigError(f"--memory must look like 512m or 2g, got {memory!r}")
    for port in ports:
        if not 0 <= port < 65536:
            raise ConfigError(f"ports must be in 0..65535 (0: any free port), got {port}")


def start_cluster(
    directory: str | Path,
    workers: int = 2,
    *,
    cores: int = 1,
    memory: str = "2g",
    host: str = "127.0.0.1",
    port: int = 7077,
    webui_port: int = 8080,
    timeout: float = 120.0,
) -> Cluster:
    """Start a master and ``workers`` workers; return once every worker has registered.

    Port 0 picks free ports (the ones taken are read from the logs). If anything fails, every
    daemon started so far is stopped before the error is raised.
    """
    from musicrec.models.spark_als import require_java

    validate(workers, cores, memory, port, webui_port)
    require_java()
    root = Path(directory).resolve()
    running = [d.name for d in recorded_daemons(root) if is_running(d.pid)]
    if running:
        raise SparkClusterError(
            f"{root}: a cluster is already running here ({', '.join(running)}); "
            f"stop it first: musicrec spark down --dir {directory}"
        )
    for sub in ("pids", "logs", "work"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / STATE_FILE).unlink(missing_ok=True)
    properties = root / "spark-defaults.conf"
    properties.write_text("".join(f"{k} {v}\n" for k, v in PROPERTIES.items()), encoding="utf-8")
    env = daemon_env(host)
    deadline = time.monotonic() + timeout
    started: list[Daemon] = []
    try:
        args = ["--host", host, "--port", str(port), "--webui-port", str(webui_port)]
        master = launch(
            root, "master", [MASTER_CLASS, *args, "--properties-file", str(properties)], env
        )
        started.append(master)
        url = wait_for_log(master, MASTER_URL, deadline)[0]
        master = with_ports(master, deadline, "sparkMaster", "MasterUI")
        webui_url = f"http://{host}:{master.webui_port}"
        for n in range(1, workers + 1):
            worker_args = [WORKER_CLASS, "--host", host, "--port", "0", "--webui-port", "0"]
            worker_args += ["--cores", str(cores), "--memory", memory]
            worker_args += ["--work-dir", str(root / "work" / f"worker-{n}")]
            worker_args += ["--properties-file", str(properties), url]
            started.append(launch(root, f"worker-{n}", worker_args, env))
        workers_up = tuple(with_ports(w, deadline, "sparkWorker", "WorkerUI") for w in started[1:])
        wait_for_workers(webui_url, workers, deadline, started)
    except BaseException:
        stop_daemons(started)
        raise
    cluster = Cluster(str(root), host, url, webui_url, master, workers_up)
    write_driver_conf(root / "conf", url, cores, memory)
    write_json_atomic(root / STATE_FILE, cluster.to_dict())
    return cluster


def write_driver_conf(directory: Path, master_url: str, cores: int, memory: str) -> Path:
    """``spark-defaults.conf`` for drivers of this cluster: one executor fills one worker."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spark-defaults.conf"
    lines = [
        "# Drivers of this cluster read this with SPARK_CONF_DIR set to this directory.",
        f"spark.master {master_url}",
        f"spark.executor.cores {cores}",
        f"spark.executor.memory {memory}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def launch(root: Path, name: str, args: list[str], env: dict[str, str]) -> Daemon:
    """Start one daemon in a new session (its pid is its process group); write its pid file."""
    log = root / "logs" / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    (root / "pids" / f"{name}.pid").write_text(f"{process.pid}\n", encoding="utf-8")
    return Daemon(name, process.pid, str(log))


def wait_for_log(daemon: Daemon, pattern: re.Pattern[str], deadline: float) -> tuple[str, ...]:
    """The groups of ``pattern``'s first match in the daemon's log, waiting for it to appear."""

    def find(text: str) -> tuple[str, ...] | None:
        found = pattern.search(text)
        return found.groups() if found else None

    return _watch_log(daemon, deadline, find)


def with_ports(daemon: Daemon, deadline: float, rpc: str, ui: str) -> Daemon:
    """The daemon with the RPC and web UI ports it reports in its log."""

    def find(text: str) -> Daemon | None:
        ports = {name: int(port) for name, port in SERVICE_PORT.findall(text)}
        if rpc in ports and ui in ports:
            return Daemon(daemon.name, daemon.pid, daemon.log, ports[rpc], ports[ui])
        return None

    return _watch_log(daemon, deadline, find)


def _watch_log(daemon: Daemon, deadline: float, find: Callable[[str], T | None]) -> T:
    """Re-read the daemon's log until ``find`` returns something; fail if it exits or stalls."""
    while True:
        text = Path(daemon.log).read_text(encoding="utf-8", errors="replace")
        found = find(text)
        if found is not None:
            return found
        if not alive(daemon.pid):
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise SparkClusterError(f"Spark {daemon.name} exited during start-up: {tail}")
        if time.monotonic() > deadline:
            raise SparkClusterError(f"Spark {daemon.name} did not start in time; see {daemon.log}")
        time.sleep(0.2)


def wait_for_workers(webui_url: str, count: int, deadline: float, daemons: list[Daemon]) -> None:
    """Poll the master's ``/json`` until ``count`` workers are ALIVE."""
    alive_workers = 0
    while time.monotonic() < deadline:
        for daemon in daemons:
            if not alive(daemon.pid):
                raise SparkClusterError(f"Spark {daemon.name} exited; see {daemon.log}")
        try:
            with urllib.request.urlopen(f"{webui_url}/json/", timeout=5) as response:
                state = json.load(response)
            alive_workers = sum(w.get("state") == "ALIVE" for w in state.get("workers", []))
        except (urllib.error.URLError, OSError, ValueError):
            alive_workers = 0
        if alive_workers >= count:
            return
        time.sleep(0.3)
    raise SparkClusterError(
        f"only {alive_workers} of {count} Spark workers registered in time; see the logs"
    )


def read_cluster(directory: str | Path) -> Cluster | None:
    """The cluster recorded in ``directory`` (``None`` if none was fully started there)."""
    path = Path(directory) / STATE_FILE
    try:
        return Cluster.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SparkClusterError(f"{path}: unreadable cluster state ({exc})") from exc


def recorded_daemons(directory: str | Path) -> list[Daemon]:
    """Every daemon with a pid file in ``directory`` (also those of a start that failed)."""
    daemons = []
    for pid_file in sorted((Path(directory) / "pids").glob("*.pid")):
        try:
            pid = int(pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue
        name = pid_file.stem
        daemons.append(Daemon(name, pid, str(Path(directory) / "logs" / f"{name}.log")))
    return daemons


def stop_cluster(directory: str | Path, timeout: float = 30.0) -> list[Daemon]:
    """Stop every daemon recorded in ``directory``; return those that were still running."""
    root = Path(directory)
    daemons = recorded_daemons(root)
    running = [d for d in daemons if is_running(d.pid)]
    # Workers first, so the master does not spend its last seconds rescheduling.
    stop_daemons(sorted(running, key=lambda d: d.name == "master"), timeout)
    for daemon in daemons:
        (root / "pids" / f"{daemon.name}.pid").unlink(missing_ok=True)
    (root / STATE_FILE).unlink(missing_ok=True)
    return running


def stop_daemons(daemons: Iterable[Daemon], timeout: float = 30.0) -> None:
    """SIGTERM each daemon's process group, wait, then SIGKILL what is left."""
    daemons = list(daemons)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for daemon in daemons:
            signal_group(daemon.pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 10.0)
        while time.monotonic() < deadline:
            if not any(is_running(d.pid) for d in daemons):
                return
            time.sleep(0.2)
    left = [d.name for d in daemons if is_running(d.pid)]
    if left:
        raise SparkClusterError(f"Spark processes survived SIGKILL: {', '.join(left)}")


def is_running(leader: int) -> bool:
    """Our daemon runs, or processes of its group (its executors) outlive it.

    A live process at ``leader`` that is not a Spark daemon means the pid was reused after our
    daemon and its whole group ended (Linux never reuses a pid still in use as a group id).
    """
    if alive(leader):
        return is_spark_daemon(leader)
    return bool(group_members(leader))


def signal_group(leader: int, sig: int) -> None:
    """Signal the group led by ``leader`` if the leader is ours, else its leftover members."""
    if alive(leader):
        if is_spark_daemon(leader):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(leader, sig)
        return
    for pid in group_members(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def alive(pid: int) -> bool:
    """``pid`` runs (reaped first if it is our exited child; a zombie counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_stat(pid)[0] != "Z"


def is_spark_daemon(pid: int) -> bool:
    """The process is a Spark master or worker (pid files can outlive their process)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return os.name == "posix" and not Path("/proc").is_dir()  # no /proc: trust the pid file
    return MASTER_CLASS in cmdline or WORKER_CLASS in cmdline


def group_members(pgid: int) -> list[int]:
    """Live processes other than ``pgid`` itself in process group ``pgid`` (Linux ``/proc``)."""
    members: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        state, group = _proc_stat(int(entry.name))
        if group == pgid and state not in ("Z", ""):
            members.append(int(entry.name))
    return members


def _proc_stat(pid: int) -> tuple[str, int]:
    """(state, process group) from ``/proc/<pid>/stat``; ``("", -1)`` when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", -1
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0], int(fields[2])

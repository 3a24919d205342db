"""A throwaway PostgreSQL server on loopback, from the operating system's packages.

The tests and benchmarks of the shared event store start one: ``initdb`` in a temporary
directory, ``postgres`` listening on 127.0.0.1 only (no Unix socket) on a free port, durability
settings left at their defaults (``fsync`` and ``synchronous_commit`` on), then a ``musicrec``
database. PostgreSQL refuses to run as root, so as root (CI) every command runs as the
unprivileged ``nobody`` through ``runuser``. :meth:`LocalPostgres.stop` asks for a fast shutdown,
kills what is left after a timeout and removes the directory; :meth:`LocalPostgres.processes`
lists anything still running from it, which a test can assert is nothing.

Authentication is ``trust`` for the loopback address only: the server lives as long as one test
run, holds test data, and no other machine can reach it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from musicrec.errors import MusicrecError

INSTALL_HINT = "PostgreSQL not found; run scripts/install-os-deps.sh (Debian package postgresql)"
UNPRIVILEGED = "nobody"


class PostgresError(MusicrecError):
    """The local PostgreSQL server could not be started."""


def binaries() -> Path:
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresError(INSTALL_HINT)
    return versions[-1].parent


def group_members(group: int) -> list[int]:
    """Pids of the live processes in process group ``group`` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL server in a temporary directory; use as a context manager."""

    def __init__(self, database: str = "musicrec", user: str = "musicrec"):
        self.database, self.user = database, user
        self.bin = binaries()
        self.as_root = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="musicrec-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.group: int | None = None  # the server's process group (its own session)

    @property
    def url(self) -> str:
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Another empty database on this server; its URL."""
        self._run(
            self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name
        )  # fmt: skip
        return self.url_of(name)

    def _command(self, *args: str | Path) -> list[str]:
        command = [str(arg) for arg in args]
        return ["runuser", "-u", UNPRIVILEGED, "--", *command] if self.as_root else command

    def _run(self, *args: str | Path) -> None:
        done = subprocess.run(
            self._command(*args), capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise PostgresError(f"{Path(str(args[0])).name} failed: {done.stderr or done.stdout}")

    def start(self, timeout_s: float = 60.0) -> str:
        """Initialise, start and create the database; returns its SQLAlchemy URL."""
        if self.as_root:
            if shutil.which("runuser") is None:
                raise PostgresError("running as root needs runuser (util-linux) to drop privileges")
            shutil.chown(self.directory, user=UNPRIVILEGED)
        self._run(self.bin / "initdb", "-D", self.data, "-U", self.user, "-A", "trust")
        self.port = free_port()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command(
                    self.bin / "postgres", "-D", self.data, "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals all of it
            )  # fmt: skip
        self.group = self.process.pid
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited: {self.log.read_text()[-2000:]}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresError(f"postgres not ready in {timeout_s:g}s")
            time.sleep(0.2)
        return self.create_database(self.database)

    def processes(self) -> list[int]:
        """Pids of the server's processes still running (empty once stopped).

        Its process group, and every process working in its data directory: PostgreSQL's
        backends start sessions of their own, but all of them run in the data directory.
        """
        found = set() if self.group is None else set(group_members(self.group))
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if Path(os.readlink(entry / "cwd")).is_relative_to(self.directory):
                        found.add(int(entry.name))
        return sorted(found)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown, then SIGKILL for anything left; the directory is removed."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            deadline = time.monotonic() + timeout_s
            while self.processes() and time.monotonic() < deadline:  # backends exit last
                time.sleep(0.1)
            for pid in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_postgres() -> Iterator[LocalPostgres]:
    """A started :class:`LocalPostgres`, stopped and removed on exit (also on failure)."""
    with LocalPostgres() as server:
        yield server

"""The container stack, built and run for real with podman.

One module-scoped fixture builds the images with ``scripts/build-images.sh`` (the script behind
``make images``: a local Debian base made with mmdebstrap, so no registry is needed), seeds a
tiny trained model into the compose ``models`` volume with the compose file's own
``model-seed`` helper, and brings up ``docker-compose.yml`` with podman-compose: the
``api-keys`` helper (the API then needs its admin key, the UI uses its own key), api, ui,
mlflow, prometheus and alertmanager (Grafana has no image here; tests/unit/test_deploy.py validates
its provisioning and dashboard). The tests then talk to the containers through their published
ports and, inside the compose network, by service name. Teardown removes every container,
network, volume and image the fixture made, also when a test fails.

Each run has its own tag (compose project, image tags, base image), so runs do not collide.
To iterate on the tests without rebuilding, build once (``TAG=dev make images``) and set
``MUSICREC_STACK_IMAGES=dev``: the fixture then uses those images and leaves them in place.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BUILD_SCRIPT = ROOT / "scripts" / "build-images.sh"
PODMAN_CONF = ROOT / "deploy" / "podman" / "containers.conf"
SERVICES = ("api", "ui", "mlflow", "prometheus", "alertmanager")
# Bounds, not expectations. Measured on the 2-core CI machine kind: 9.7 min in all (build
# 6.9 min) with other jobs on it (load average about 6), 18.6 min (build 13.4 min) under heavy
# load (about 10). The margins keep a loaded machine from failing the test.
BUILD_TIMEOUT_S = 1800
UP_TIMEOUT_S = 300
ALERT_TIMEOUT_S = 300
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


def find_podman() -> str:
    podman = shutil.which("podman")
    if podman is None:
        message = "podman not found; run scripts/install-os-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return podman


def find_podman_compose() -> str:
    """podman-compose from this environment (a dev dependency), else from PATH."""
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if found is None:
        pytest.fail("podman-compose not found: it is a dev dependency, run make install")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(
    url: str, *, data: Any = None, timeout: float = 5.0, key: str | None = None
) -> tuple[int, bytes]:
    """Status and body of a GET (or a JSON POST when data is given); errors become statuses."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_json(url: str, **kwargs: Any) -> Any:
    status, body = http(url, **kwargs)
    assert status == 200, f"{url}: HTTP {status} {body[:300]!r}"
    return json.loads(body)


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Poll check() until it returns something truthy; fail with the last error after timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (OSError, AssertionError, ValueError) as err:
            last = err
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@dataclass
class Stack:
    """A running compose project and how to reach it."""

    podman: str
    compose: list[str]
    project: str
    tag: str
    env: dict[str, str]
    ports: dict[str, int]
    extra_containers: list[str] = field(default_factory=list)
    api_key: str = ""  # the admin key the compose file's api-keys service made

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def container(self, service: str) -> str:
        names = self.run(
            self.podman,
            "ps",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=io.podman.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).split()
        assert len(names) == 1, f"{service}: containers {names}"
        return names[0]

    def exec_python(self, service: str, code: str) -> str:
        return self.run(self.podman, "exec", self.container(service), "python", "-c", code)

    def logs(self) -> str:
        parts = []
        for service in SERVICES:
            try:
                out = self.run(
                    self.podman, "logs", "--tail", "30", self.container(service), check=False
                )
            except (AssertionError, pytest.fail.Exception):
                out = "(no container)"
            parts.append(f"--- {service}\n{out}")
        return "\n".join(parts)


def ids(podman: str, env: dict[str, str], *listing: str) -> set[str]:
    """Full ids from a podman listing, e.g. ``images --all``."""
    out = subprocess.run(
        [podman, *listing, "--quiet", "--no-trunc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(out.split())


# Images, and build containers (a build cut short leaves its working containers behind).
IMAGES = ("images", "--all")
BUILD_CONTAINERS = ("ps", "--all", "--external")


def teardown(
    stack: Stack, before: dict[str, set[str]], base_image: str, remove_images: bool
) -> None:
    """Remove what this run made; every step tolerates what an earlier failure left out."""

    def quiet(*args: str, timeout: float = 180) -> None:
        subprocess.run(args, env=stack.env, capture_output=True, timeout=timeout, check=False)

    for name in stack.extra_containers:
        quiet(stack.podman, "rm", "--force", "--time", "2", name)
    quiet(*stack.compose, "--profile", "tools", "down", "--volumes", "--timeout", "5")
    label = f"label=io.podman.compose.project={stack.project}"
    leftovers = subprocess.run(
        [stack.podman, "ps", "--all", "--quiet", "--filter", label],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split()
    if leftovers:
        quiet(stack.podman, "rm", "--force", "--time", "2", *leftovers)
    volumes = subprocess.run(
        [stack.podman, "volume", "ls", "--quiet", "--filter", label],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split()
    if volumes:
        quiet(stack.podman, "volume", "rm", "--force", *volumes)
    quiet(stack.podman, "network", "rm", "--force", f"{stack.project}_default")
    if not remove_images:
        return
    made_containers = ids(stack.podman, stack.env, *BUILD_CONTAINERS) - before["containers"]
    if made_containers:
        quiet(stack.podman, "rm", "--force", *sorted(made_containers))
    for image in ("api", "ui", "prometheus", "alertmanager"):
        quiet(stack.podman, "rmi", f"musicrec-{image}:{stack.tag}")
    quiet(stack.podman, "rmi", base_image)
    # Intermediate build layers this run created (children first, hence a few passes).
    for _ in range(3):
        made = ids(stack.podman, stack.env, *IMAGES) - before["images"]
        if not made:
            break
        quiet(stack.podman, "rmi", *sorted(made))


OS_DEPS_SCRIPT = ROOT / "scripts" / "install-os-deps.sh"


def minimal_rootfs(where: Path) -> Path:
    """A root filesystem holding only ``/usr/bin/true`` and the libraries it loads."""
    true = Path("/usr/bin/true")
    libs = re.findall(
        r"(/\S+)",
        subprocess.run(["ldd", str(true)], capture_output=True, text=True, check=True).stdout,
    )
    for source in [true, *map(Path, libs)]:
        target = where / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return where


def network_problem(podman: str, env: dict[str, str], name: str, workdir: Path) -> str | None:
    """Why podman cannot create a network and run a container on it, in one line; None if it can.

    A compose project needs both; without this check a missing helper surfaces as one set-up
    error per test after minutes of image building. The rootfs is the host's own ``true``, so
    no image or registry is involved.
    """

    def podman_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [podman, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    steps = [
        ("network", "create", name),
        (
            "run",
            "--rm",
            "--network",
            name,
            "--rootfs",
            str(minimal_rootfs(workdir)),
            "/usr/bin/true",
        ),
    ]
    try:
        for step in steps:
            result = podman_run(*step)
            if result.returncode != 0:
                error = (result.stderr.strip().splitlines() or ["no message"])[-1]
                check = subprocess.run(
                    ["bash", str(OS_DEPS_SCRIPT), "--check"], capture_output=True, text=True
                )
                missing = " ".join(
                    line.removeprefix("install-os-deps: ") for line in check.stderr.splitlines()
                )
                hint = missing or "run scripts/install-os-deps.sh"
                return f"podman cannot run a container on a network ({error}); {hint}"
        return None
    finally:
        podman_run("network", "rm", "--force", name)


@dataclass
class Unavailable:
    """Why the stack cannot start; the first test reports it, the others skip."""

    reason: str
    reported: bool = False


@pytest.fixture
def stack(stack_or_reason: Stack | Unavailable) -> Stack:
    if isinstance(stack_or_reason, Unavailable):
        if stack_or_reason.reported:
            pytest.skip(f"the stack could not start (reported above): {stack_or_reason.reason}")
        stack_or_reason.reported = True
        pytest.fail(stack_or_reason.reason, pytrace=False)
    return stack_or_reason


@pytest.fixture(scope="module")
def stack_or_reason(
    synth_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack | Unavailable]:
    podman = find_podman()
    compose_bin = find_podman_compose()
    run_id = f"mrstack{uuid.uuid4().hex[:8]}"
    prebuilt = os.environ.get("MUSICREC_STACK_IMAGES", "")
    tag = prebuilt or run_id
    base_image = f"localhost/musicrec-base:{run_id}"
    # Compose interpolates ${VAR:-default} from the environment: none of the caller's values
    # (e.g. the test session's own MLFLOW_TRACKING_URI) may leak into the containers.
    compose_vars = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    env = {key: value for key, value in os.environ.items() if key not in compose_vars}
    env.setdefault("CONTAINERS_CONF", str(PODMAN_CONF))
    ports = {service: free_port() for service in SERVICES}
    env.update(
        TAG=tag,
        ENGINE="podman",
        LOCAL_BASE_IMAGE=base_image,
        PYTHON=sys.executable,
        MUSICREC_VERSION=tag,
        PROMETHEUS_IMAGE="localhost/musicrec-prometheus",
        PROMETHEUS_VERSION=tag,
        ALERTMANAGER_IMAGE="localhost/musicrec-alertmanager",
        ALERTMANAGER_VERSION=tag,
        MUSICREC_API_PORTS=str(ports["api"]),
        MUSICREC_UI_PORT=str(ports["ui"]),
        MLFLOW_PORT=str(ports["mlflow"]),
        PROMETHEUS_PORT=str(ports["prometheus"]),
        ALERTMANAGER_PORT=str(ports["alertmanager"]),
        MUSICREC_SEED_DIR=str(synth_model),
    )
    env.pop("BASE_IMAGE", None)
    env.pop("IMAGES", None)
    compose = [compose_bin, "--project-name", run_id, "--file", str(COMPOSE_FILE)]
    stack = Stack(podman, compose, run_id, tag, env, ports)
    before = {
        "images": ids(podman, env, *IMAGES),
        "containers": ids(podman, env, *BUILD_CONTAINERS),
    }
    problem = network_problem(podman, env, f"{run_id}_preflight", tmp_path_factory.mktemp("rootfs"))
    if problem:
        yield Unavailable(problem)
        return
    try:
        started = time.monotonic()
        if not prebuilt:
            stack.run("bash", str(BUILD_SCRIPT), timeout=BUILD_TIMEOUT_S)
            print(f"images built in {time.monotonic() - started:.0f} s")
        stack.run(*compose, "--profile", "tools", "run", "--rm", "model-seed", timeout=120)
        stack.run(*compose, "up", "--detach", "api-keys", *SERVICES, timeout=UP_TIMEOUT_S)
        try:
            wait_until(
                "the API container to be ready",
                lambda: http(stack.url("api", "/ready"))[0] == 200,
                UP_TIMEOUT_S,
            )
        except pytest.fail.Exception:
            print(stack.logs())
            raise
        print(f"stack up {time.monotonic() - started:.0f} s after the build started")
        api = stack.container("api")
        stack.api_key = stack.run(stack.podman, "exec", api, "cat", "/keys/admin.key").strip()
        yield stack
    finally:
        teardown(stack, before, base_image, remove_images=not prebuilt)


def test_api_container_serves_health_and_a_recommendation(stack: Stack) -> None:
    health = http_json(stack.url("api", "/health"))
    assert health["status"] == "healthy" and health["model_loaded"] is True
    assert http(stack.url("api", "/users?limit=3"))[0] == 401  # keys are in force
    users = http_json(stack.url("api", "/users?limit=3"), key=stack.api_key)["users"]
    body = {"type": "user", "user_id": users[0], "k": 5}
    recs = http_json(stack.url("api", "/recommend"), data=body, key=stack.api_key)
    assert recs["user_id"] == users[0]
    assert len(recs["recommendations"]) == 5


def test_every_container_passes_its_image_healthcheck(stack: Stack) -> None:
    # podman schedules health checks with systemd timers, absent on a CI machine, so run each
    # service's HEALTHCHECK by hand: the image's (api, ui) and the compose file's.
    def healthy(container: str) -> bool:
        result = subprocess.run(
            [stack.podman, "healthcheck", "run", container],
            env=stack.env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    for service in SERVICES:
        container = stack.container(service)
        wait_until(f"{service} healthcheck", functools.partial(healthy, container), 120, 3)


def test_ui_container_answers_and_reaches_the_api_by_service_name(stack: Stack) -> None:
    wait_until(
        "the UI health endpoint",
        lambda: http(stack.url("ui", "/_stcore/health")) == (200, b"ok"),
        120,
    )
    status, page = http(stack.url("ui", "/"))
    assert status == 200 and b"<html" in page.lower()
    # The UI's own API client, inside the UI container, with the URL compose gives it.
    out = stack.exec_python(
        "ui",
        "from musicrec.ui.client import ApiClient\n"
        "with ApiClient.from_env() as client:\n"
        "    recs = client.recommend_random(4)\n"
        "    print(client.base_url, len(recs.recommendations))\n",
    )
    assert out.split() == ["http://api:8000", "4"]


def test_mlflow_container_answers_by_service_name(stack: Stack) -> None:
    status, _ = http(stack.url("mlflow", "/health"))
    assert status == 200
    out = stack.exec_python(
        "api",
        "import os, urllib.request\n"
        "url = os.environ['MLFLOW_TRACKING_URI'] + '/health'\n"
        "print(url, urllib.request.urlopen(url, timeout=5).status)\n",
    )
    assert out.split() == ["http://mlflow:5000/health", "200"]


def api_targets(stack: Stack) -> list[dict[str, Any]]:
    targets = http_json(stack.url("prometheus", "/api/v1/targets"))["data"]["activeTargets"]
    return [t for t in targets if t["labels"]["job"] == "musicrec-api"]


def test_prometheus_scrapes_the_api_container(stack: Stack) -> None:
    up = wait_until(
        "Prometheus to scrape the API container",
        lambda: [t for t in api_targets(stack) if t["health"] == "up"],
        120,
    )
    assert len(up) == 1
    query = "model_loaded{job='musicrec-api'}"
    result = wait_until(
        "model_loaded in Prometheus",
        lambda: http_json(stack.url("prometheus", f"/api/v1/query?query={query}"))["data"][
            "result"
        ],
        60,
    )
    assert [sample["value"][1] for sample in result] == ["1"]
    managers = http_json(stack.url("prometheus", "/api/v1/alertmanagers"))["data"]
    assert [m["url"] for m in managers["activeAlertmanagers"]] == [
        "http://alertmanager:9093/api/v2/alerts"
    ]


def test_model_missing_alert_fires_and_reaches_alertmanager(stack: Stack) -> None:
    """A second API replica without a model joins the `api` service name and raises the alert.

    Prometheus finds it by DNS like any replica (`--scale api=2`); the rules are the real ones
    (deploy/prometheus/alerts.yml, `for: 1m`).
    """
    name = f"{stack.project}_api-nomodel"
    stack.extra_containers.append(name)
    api = stack.container("api")
    network = stack.run(
        stack.podman,
        "inspect",
        api,
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    ).split()[0]
    stack.run(
        stack.podman,
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        network,
        "--network-alias",
        "api",
        "--volume",
        f"{stack.project}_api-keys:/keys:ro",
        "--env",
        "MUSICREC_API_KEYS_FILE=/keys/api-keys.json",
        "--env",
        "MUSICREC_MODEL=/models/missing",
        "--env",
        "MUSICREC_WORKERS=1",
        f"musicrec-api:{stack.tag}",
    )
    ready = wait_until(
        "the model-less API to answer /ready",
        lambda: stack.run(
            stack.podman,
            "exec",
            name,
            "python",
            "-c",
            "import urllib.request, urllib.error\n"
            "try:\n"
            "    urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=3)\n"
            "except urllib.error.HTTPError as err:\n"
            "    print(err.code)\n",
            check=False,
        ).strip(),
        90,
    )
    assert ready == "503"
    wait_until(
        "Prometheus to discover the second replica", lambda: len(api_targets(stack)) == 2, 60
    )

    def firing() -> list[dict[str, Any]]:
        alerts = http_json(stack.url("prometheus", "/api/v1/alerts"))["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "MusicrecModelNotLoaded" and a["state"] == "firing"
        ]

    (alert,) = wait_until("MusicrecModelNotLoaded to fire", firing, ALERT_TIMEOUT_S, 5)
    assert alert["labels"]["severity"] == "critical"

    def received() -> list[dict[str, Any]]:
        alerts = http_json(stack.url("alertmanager", "/api/v2/alerts"))
        return [a for a in alerts if a["labels"]["alertname"] == "MusicrecModelNotLoaded"]

    (delivered,) = wait_until("the alert to reach Alertmanager", received, 60)
    assert delivered["status"]["state"] == "active"
    assert delivered["labels"]["instance"] == alert["labels"]["instance"]

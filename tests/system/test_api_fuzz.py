"""Property-based fuzzing of every operation in the OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from musicrec.api.app import create_app
from musicrec.api.settings import Settings

MAX_EXAMPLES = 30


def _spec() -> dict[str, Any]:
    """The OpenAPI document; building it loads no model."""
    return create_app(Settings(_env_file=None, model=None)).openapi()  # type: ignore[call-arg]


def _operations() -> list[tuple[str, str]]:
    return sorted(
        (path, method.upper()) for path, ops in _spec()["paths"].items() for method in ops
    )


def _cases() -> list[Any]:
    """Every operation in positive mode; those with inputs also in negative mode."""
    cases = []
    for path, ops in sorted(_spec()["paths"].items()):
        for method, op in ops.items():
            has_input = bool(op.get("parameters") or op.get("requestBody"))
            for mode in GenerationMode:
                if mode is GenerationMode.POSITIVE or has_input:
                    label = f"{method.upper()} {path} {mode.value}"
                    cases.append(pytest.param(path, method.upper(), mode, id=label))
    return cases


@pytest.fixture(scope="module")
def api_schema(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    model = tmp_path_factory.mktemp("fuzz-model") / "model"
    shutil.copytree(synth_model, model)
    settings_ = Settings(_env_file=None, model=str(model), admin_api_key="fuzz-key")  # type: ignore[call-arg,arg-type]
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings_))


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method", "mode"), _cases())
def test_no_server_errors(api_schema: Any, path: str, method: str, mode: GenerationMode) -> None:
    """Valid (positive) and schema-violating (negative) requests alike answer below 500."""
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call()
        assert response.status_code < 500, f"{method} {case.formatted_path}: {response.text}"

    check()


def test_schema_lists_every_route() -> None:
    paths = {path for path, _ in _operations()}
    expected = {
        "/health", "/ready", "/metrics", "/recommend", "/similar", "/charts", "/moods",
        "/users", "/users/{user_id}/recommendations", "/listeners/recommendations",
        "/artists", "/artists/{name}/similar", "/model", "/admin/reload",
    }  # fmt: skip
    assert expected <= paths

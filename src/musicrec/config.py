"""Training configuration: one dataclass, read from YAML, overridable by CLI flags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from musicrec.errors import ConfigError

Weighting = Literal["none", "log1p", "bm25"]
Engine = Literal["implicit", "spark"]
WEIGHTINGS: tuple[str, ...] = ("none", "log1p", "bm25")
ENGINES: tuple[str, ...] = ("implicit", "spark")


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file (empty -> ``{}``); every way it can fail is a one-line ConfigError."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc


@dataclass(frozen=True)
class TrainConfig:
    """ALS hyperparameters. ``alpha`` scales the weighted plays once, in :mod:`confidence`."""

    factors: int = 64
    regularization: float = 0.1
    iterations: int = 15
    alpha: float = 2.0
    weighting: Weighting = "log1p"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    seed: int = 42
    engine: Engine = "implicit"
    use_gpu: bool = False

    def __post_init__(self) -> None:
        if self.factors < 1:
            raise ConfigError(f"factors must be >= 1, got {self.factors}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if self.regularization < 0:
            raise ConfigError(f"regularization must be >= 0, got {self.regularization}")
        if self.alpha <= 0:
            raise ConfigError(f"alpha must be > 0, got {self.alpha}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def override(self, **changes: Any) -> TrainConfig:
        """Copy with the non-``None`` ``changes`` applied (CLI flags left unset are ``None``)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file; a top-level ``train:`` section is used when present."""
        data = read_yaml(path, "config")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of parameters")
        section = data.get("train", data)
        return cls.from_dict(dict(section))

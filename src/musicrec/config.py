"""Training configuration: one dataclass, read from YAML, overridable by CLI flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from musicrec.errors import ConfigError

Weighting = Literal["none", "log1p", "bm25"]
Engine = Literal["implicit", "spark"]
WEIGHTINGS: tuple[str, ...] = ("none", "log1p", "bm25")
ENGINES: tuple[str, ...] = ("implicit", "spark")
SIMILARITIES: tuple[str, ...] = ("cosine", "bm25", "tfidf")


@dataclass(frozen=True)
class KindSpec:
    """One model kind: its class, the :class:`TrainConfig` parameters it reads, its defaults.

    ``target`` names the class as ``package.module:Class`` (an entry point): it is imported
    only when a model of the kind is built or loaded (:func:`musicrec.models.kinds.model_class`),
    so this table stays below the models in the import layers.
    """

    target: str
    params: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)


_WEIGHTING = ("weighting", "alpha", "bm25_k1", "bm25_b")
# The registration of every model kind: adding a kind is its module in musicrec.models plus
# one line here (or one register_kind call). Defaults not given are the field defaults (ALS's).
KIND_SPECS: dict[str, KindSpec] = {
    "als": KindSpec(
        "musicrec.models.als:ALSModel",
        ("factors", "regularization", "iterations", *_WEIGHTING, "seed", "engine", "use_gpu"),
    ),
    "ease": KindSpec(
        "musicrec.models.itemitem:EASEModel",
        ("l2", *_WEIGHTING),
        {"l2": 500.0, "alpha": 1.0, "weighting": "log1p"},
    ),
    "itemknn": KindSpec(
        "musicrec.models.itemitem:ItemKNNModel",
        ("similarity", "neighbours", *_WEIGHTING, "engine"),
        {"similarity": "cosine", "neighbours": 100, "alpha": 1.0, "weighting": "log1p"},
    ),
    "rp3beta": KindSpec(
        "musicrec.models.itemitem:RP3BetaModel",
        ("rp3_alpha", "rp3_beta", "neighbours", *_WEIGHTING, "engine"),
        {"neighbours": 200, "alpha": 1.0, "weighting": "log1p"},
    ),
    # Defaults measured on HetRec Last.fm-2K validation (ratio 8:1:1, binary): docs/protocols.md.
    "dlae": KindSpec(
        "musicrec.models.dlae:DLAEModel",
        ("l2", "dropout", *_WEIGHTING),
        {"l2": 35.0, "dropout": 0.33, "alpha": 1.0, "weighting": "log1p"},
    ),
    "blend": KindSpec("musicrec.models.blend:BlendModel", ("first", "second", "blend_weight")),
    "popularity": KindSpec("musicrec.models.baselines:PopularityModel", ()),
    "random": KindSpec("musicrec.models.baselines:RandomModel", ("seed",), {"seed": 0}),
}
# The learned kinds (what `musicrec train --kind` is for); the baselines are kinds as well.
KINDS: tuple[str, ...] = ("als", "ease", "itemknn", "rp3beta", "dlae", "blend")
BASELINES: tuple[str, ...] = ("popularity", "random")
BLEND_DEFAULT_FIRST: dict[str, Any] = {"kind": "ease"}
BLEND_DEFAULT_SECOND: dict[str, Any] = {"kind": "als"}


def register_kind(name: str, spec: KindSpec) -> None:
    """Register model kind ``name`` (a plugin or a test; the shipped kinds are listed above)."""
    KIND_SPECS[name] = spec


def kind_spec(kind: str) -> KindSpec:
    """The registration of ``kind`` (one-line error for an unknown kind)."""
    spec = KIND_SPECS.get(kind)
    if spec is None:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(KIND_SPECS)}")
    return spec


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
    """What to train: a model ``kind`` and its parameters (``KIND_SPECS[kind].params``).

    The field defaults are ALS's; :meth:`for_kind` applies each kind's own defaults.
    ``alpha`` scales the weighted plays once, in :mod:`musicrec.models.confidence`, for every kind.
    """

    kind: str = "als"
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
    l2: float = 500.0  # EASE: L2 penalty on the item-item weights
    similarity: str = "cosine"  # itemknn: cosine | bm25 | tfidf
    neighbours: int = 100  # itemknn / rp3beta: neighbours kept per item
    rp3_alpha: float = 1.0  # rp3beta: exponent on transition probabilities
    rp3_beta: float = 0.3  # rp3beta: popularity penalty exponent
    blend_weight: float = 0.5  # blend: weight of ``first`` (``second`` gets 1 - w)
    dropout: float = 0.33  # dlae: input dropout probability of the linear autoencoder
    first: Mapping[str, Any] | None = field(default=None, compare=False)
    second: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self._check_types()
        kind_spec(self.kind)
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
        if self.l2 <= 0:
            raise ConfigError(f"l2 must be > 0, got {self.l2}")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {', '.join(SIMILARITIES)}")
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be >= 1, got {self.neighbours}")
        if self.rp3_alpha <= 0 or self.rp3_beta < 0:
            raise ConfigError("rp3_alpha must be > 0 and rp3_beta >= 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.blend_weight <= 1:
            raise ConfigError(f"blend_weight must be in [0, 1], got {self.blend_weight}")
        if self.kind == "blend":
            for name in ("first", "second"):
                part = getattr(self, name)
                if part is not None and not isinstance(part, Mapping):
                    raise ConfigError(f"blend {name} must be a mapping of parameters")
                if (part or {}).get("kind") == "blend":
                    raise ConfigError("a blend cannot contain another blend")
            for name in ("first", "second"):
                if self.part(name).engine != "implicit":  # also validates the component
                    raise ConfigError(f"blend {name}: a blend fits its parts in process (engine)")

    def _check_types(self) -> None:
        """Each parameter has its field's type (an int is accepted for a float)."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            default = spec.default
            if spec.name in ("first", "second") or value is None:
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    object.__setattr__(self, spec.name, float(value))
            else:
                ok = isinstance(value, str)
            if not ok:
                kind = type(default).__name__
                raise ConfigError(f"{spec.name} must be of type {kind}, got {value!r}")

    @property
    def params(self) -> tuple[str, ...]:
        """The parameter names this kind reads."""
        return kind_spec(self.kind).params

    def part(self, name: str) -> TrainConfig:
        """A blend component (``first`` or ``second``) as its own config."""
        default = BLEND_DEFAULT_FIRST if name == "first" else BLEND_DEFAULT_SECOND
        data = dict(getattr(self, name) or default)
        try:
            return TrainConfig.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"blend {name}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """``kind`` and this kind's parameters (what a manifest and a tracked run record)."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in self.params:
            value = getattr(self, name)
            if name in ("first", "second"):
                value = self.part(name).to_dict()
            out[name] = value
        return out

    def override(self, **changes: Any) -> TrainConfig:
        """Copy with the non-``None`` ``changes`` applied (CLI flags left unset are ``None``).

        Changing ``kind`` starts from that kind's defaults; a parameter the (new) kind does
        not read is an error.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        kind = changes.pop("kind", self.kind)
        base = self if kind == self.kind else TrainConfig.for_kind(kind)
        _check_belongs(kind, changes)
        return replace(base, **changes)

    @classmethod
    def for_kind(cls, kind: str, **params: Any) -> TrainConfig:
        """``kind`` with its defaults and ``params`` applied."""
        spec = kind_spec(kind)
        _check_belongs(kind, params)
        return cls(kind=kind, **(dict(spec.defaults) | params))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(sorted(unknown))}")
        params = dict(data)
        return cls.for_kind(str(params.pop("kind", "als")), **params)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file; a top-level ``train:`` section is used when present."""
        data = read_yaml(path, "config")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of parameters")
        section = data.get("train", data)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: expected a mapping of parameters")
        return cls.from_dict(dict(section))


def _check_belongs(kind: str, params: Mapping[str, Any]) -> None:
    known = kind_spec(kind).params
    foreign = sorted(set(params) - set(known) - {"kind"})
    if foreign:
        raise ConfigError(
            f"parameter(s) {', '.join(foreign)} do not belong to model kind {kind!r} "
            f"(its parameters: {', '.join(known) or 'none'})"
        )


_NO_KIND = KindSpec("", ())


def parse_params(items: list[str], base: TrainConfig) -> dict[str, Any]:
    """``["l2=1000", "first.kind=ease"]`` -> typed overrides of ``base`` (one-line errors).

    Values are parsed as YAML scalars (``10`` -> int, ``0.5`` -> float, ``bm25`` -> str);
    ``first.``/``second.`` keys set a blend component's parameters.
    """
    out: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)):
            raise ConfigError(f"--param {item!r}: expected a single value")
        head, dot, rest = key.partition(".")
        if dot and head in ("first", "second"):
            if base.kind != "blend":
                raise ConfigError(f"--param {key}: only a blend has {head} parameters")
            parts.setdefault(
                head, dict(base.part(head).to_dict()) if head not in parts else parts[head]
            )
            if rest == "kind":
                parts[head] = {"kind": value} | {
                    k: v
                    for k, v in parts[head].items()
                    if k in KIND_SPECS.get(str(value), _NO_KIND).params
                }
            else:
                parts[head][rest] = value
            continue
        if key not in {f.name for f in fields(TrainConfig)}:
            raise ConfigError(
                f"--param {key}: unknown parameter; {base.kind} takes {', '.join(base.params)}"
            )
        out[key] = value
    out.update(parts)
    return out

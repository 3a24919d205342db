"""API keys: a JSON file of hashed keys, each with a name, scopes and an optional quota.

A key is ``mrk_<id>_<secret>``: ``id`` (8 hex digits) is public and names the key in
listings; the secret is 32 random bytes. The file keeps only the SHA-256 of the whole key,
so a copy of the file cannot be used to call the API. A fast hash is enough here (unlike
passwords, keys are random and long, so nothing is gained by a slow one) and it keeps the
check on every request in microseconds.

The file is only ever appended to: revoking marks a key, it is never removed, so each key
keeps its position (the API uses it as the key's slot in the shared quota state). Every
change is written to a temporary file and renamed over the old one under a lock, so API
workers that re-read the file never see half of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from musicrec.errors import ConfigError

KEYS_FILE_ENV = "MUSICREC_API_KEYS_FILE"
CLIENT_KEY_ENV = "MUSICREC_API_KEY"  # a client's own key (the UI, traffic, replay)
CLIENT_KEY_FILE_ENV = "MUSICREC_API_KEY_FILE"  # or a file holding it (a mounted secret)
FORMAT = 1
SCOPES: tuple[str, ...] = ("read", "events", "admin", "metrics")
PREFIX = "mrk_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_RATE = 1_000_000.0


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: everything but the key itself."""

    name: str
    id: str
    sha256: str
    scopes: tuple[str, ...]
    rate: float | None = None  # requests per second; None: no quota
    burst: int | None = None  # bucket size
    created_at: float = field(default_factory=time.time)
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(key: str) -> str:
    """SHA-256 (hex) of a key, as the keys file stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"read,events"`` (or a list) as a sorted tuple of known scopes."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    scopes = sorted({part.strip() for part in parts if part.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ConfigError(
            f"unknown scope {unknown[0]!r}; choose from {', '.join(SCOPES)}"
            if unknown
            else f"give at least one scope: {', '.join(SCOPES)}"
        )
    return tuple(scopes)


def quota(rate: float | None, burst: int | None) -> tuple[float | None, int | None]:
    """Checked ``(rate, burst)``; ``burst`` defaults to one second's worth of ``rate``."""
    if rate is None:
        if burst is not None:
            raise ConfigError("--burst needs --rate")
        return None, None
    if not (math.isfinite(rate) and 0 < rate <= MAX_RATE):
        raise ConfigError(f"--rate must be a number of requests per second in (0, {MAX_RATE:g}]")
    if burst is None:
        burst = max(1, math.ceil(rate))
    if burst < 1:
        raise ConfigError("--burst must be at least 1")
    return float(rate), int(burst)


def _key_from(raw: Any, path: Path, position: int) -> ApiKey:
    try:
        key = ApiKey(
            name=str(raw["name"]),
            id=str(raw["id"]),
            sha256=str(raw["sha256"]),
            scopes=tuple(raw["scopes"]),
            rate=None if raw.get("rate") is None else float(raw["rate"]),
            burst=None if raw.get("burst") is None else int(raw["burst"]),
            created_at=float(raw.get("created_at") or 0.0),
            revoked_at=None if raw.get("revoked_at") is None else float(raw["revoked_at"]),
        )
        parse_scopes(key.scopes)
        quota(key.rate, key.burst)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{path}: key {position} is malformed ({exc})") from None
    if not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
        raise ConfigError(f"{path}: key {position} has no valid sha256")
    return key


def read_keys(path: str | Path) -> list[ApiKey]:
    """Every key of the file, revoked ones included, in file order."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"API keys file {path} not found; create a key with "
            f"`musicrec keys create --name NAME --scope read --keys-file {path}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the API keys file {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a musicrec API keys file (format {FORMAT})")
    raw_keys = payload.get("keys")
    if not isinstance(raw_keys, list):
        raise ConfigError(f"{path}: 'keys' must be a list")
    return [_key_from(raw, path, i) for i, raw in enumerate(raw_keys)]


def _write(path: Path, keys: list[ApiKey]) -> None:
    payload = {"format": FORMAT, "keys": [asdict(k) for k in keys]}
    text = json.dumps(payload, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[ApiKey]]:
    """The file's keys under an exclusive lock (an empty list when it does not exist yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield read_keys(path) if path.exists() else []
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def create_key(
    path: str | Path,
    name: str,
    scopes: str | Iterable[str],
    rate: float | None = None,
    burst: int | None = None,
) -> tuple[ApiKey, str]:
    """Add a key to the file (created if absent); the stored record and the key itself."""
    path = Path(path)
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"invalid key name {name!r}: 1-64 letters, digits, '.', '_' or '-' "
            "(it is shown in metrics: never a person's name or e-mail)"
        )
    checked = parse_scopes(scopes)
    rate, burst = quota(rate, burst)
    with _locked(path) as keys:
        if any(k.name == name and k.active for k in keys):
            raise ConfigError(f"an active key named {name!r} exists; revoke it or pick a new name")
        taken = {k.id for k in keys}
        key_id = secrets.token_hex(4)
        while key_id in taken:
            key_id = secrets.token_hex(4)
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(name, key_id, digest(secret), checked, rate, burst)
        _write(path, [*keys, record])
    return record, secret


def revoke_key(path: str | Path, name_or_id: str) -> ApiKey:
    """Mark the active key with this name (or id) revoked; the revoked record."""
    path = Path(path)
    with _locked(path) as keys:
        if not keys and not path.exists():
            raise ConfigError(f"API keys file {path} not found")
        matches = [i for i, k in enumerate(keys) if k.active and name_or_id in (k.name, k.id)]
        if not matches:
            raise ConfigError(f"no active key named {name_or_id!r} in {path}")
        at = matches[0]
        keys[at] = replace(keys[at], revoked_at=time.time())
        _write(path, keys)
        return keys[at]


def client_key(
    explicit: str | None = None, env: str = CLIENT_KEY_ENV, file_env: str = CLIENT_KEY_FILE_ENV
) -> str | None:
    """A client's key: ``explicit``, else ``$MUSICREC_API_KEY``, else the file named by
    ``$MUSICREC_API_KEY_FILE`` (a mounted secret); ``None`` for an open API. ``env`` and
    ``file_env`` name other variables for a second key (the web UI's admin key)."""
    if explicit:
        return explicit.strip()
    if os.environ.get(env, "").strip():
        return os.environ[env].strip()
    path = os.environ.get(file_env, "").strip()
    if not path:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path} ({exc.strerror})") from None
    return key or None

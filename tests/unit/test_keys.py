"""The API keys file and ``musicrec keys``: hashed at rest, scoped, revocable, printed once."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musicrec.access.keys import create_key, digest, read_keys, revoke_key
from musicrec.cli import app
from musicrec.errors import ConfigError


def test_a_key_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    record, key = create_key(path, "ui", "read,events", rate=5)
    text = path.read_text()
    assert key not in text and key.split("_")[-1] not in text
    assert record.sha256 == digest(key) and record.sha256 in text
    assert key.startswith(f"mrk_{record.id}_") and len(key) > 40
    assert (record.scopes, record.rate, record.burst) == (("events", "read"), 5.0, 5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keys(path) == [record]


def test_keys_are_unique_and_revocation_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first, key1 = create_key(path, "ui", "read")
    with pytest.raises(ConfigError, match="active key named 'ui'"):
        create_key(path, "ui", "read")
    revoked = revoke_key(path, "ui")
    assert revoked.revoked_at is not None and not revoked.active
    second, key2 = create_key(path, "ui", "read")  # a new key under the old name
    keys = read_keys(path)
    assert [k.active for k in keys] == [False, True] and key1 != key2
    assert keys[0].id == first.id  # positions never move: they are quota slots
    revoke_key(path, second.id)  # by id as well
    with pytest.raises(ConfigError, match="no active key"):
        revoke_key(path, "ui")


@pytest.mark.parametrize(
    ("name", "scope", "rate", "burst", "message"),
    [
        ("ui", "read,write", None, None, "unknown scope 'write'"),
        ("ui", " , ", None, None, "at least one scope"),
        ("jane@example.com", "read", None, None, "invalid key name"),
        ("ui", "read", None, 5, "--burst needs --rate"),
        ("ui", "read", 0.0, None, "--rate must be"),
        ("ui", "read", float("nan"), None, "--rate must be"),
        ("ui", "read", 1.0, 0, "--burst must be at least 1"),
    ],
)
def test_bad_key_requests_say_why(
    tmp_path: Path, name: str, scope: str, rate: float | None, burst: int | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        create_key(tmp_path / "keys.json", name, scope, rate, burst)
    assert not (tmp_path / "keys.json").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read"),
        ('{"format": 9, "keys": []}', "not a musicrec API keys file"),
        ('{"format": 1, "keys": [{"name": "x"}]}', "key 0 is malformed"),
    ],
)
def test_a_broken_keys_file_is_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_keys(path)
    with pytest.raises(ConfigError, match="not found"):
        read_keys(tmp_path / "absent.json")


def test_cli_prints_the_key_once_as_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    runner = CliRunner()
    args = ["keys", "create", "--name", "ui", "--scope", "read,events", "--keys-file", str(path)]
    created = runner.invoke(app, [*args, "--rate", "2", "--burst", "4"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert digest(key) == read_keys(path)[0].sha256
    listed = runner.invoke(app, ["keys", "list", "--keys-file", str(path), "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scopes"], r["rate"], r["burst"]) for r in rows] == [
        ("ui", ["events", "read"], 2.0, 4)
    ]
    assert key not in listed.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "active key named 'ui'" in again.output
    revoked = runner.invoke(app, ["keys", "revoke", "ui", "--keys-file", str(path)])
    assert revoked.exit_code == 0 and read_keys(path)[0].revoked_at is not None
    missing = runner.invoke(app, ["keys", "list"], env={"MUSICREC_API_KEYS_FILE": ""})
    assert missing.exit_code == 1 and "--keys-file" in missing.output

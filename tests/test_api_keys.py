"""`footfall api-key`: create prints a key once and stores only its hash; list never shows keys; revoke deletes one."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from click.testing import CliRunner

import footfall.cli
from conftest import rows


def run(db_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(footfall.cli.cli, ["api-key", *args, "--db", str(db_path)])
    return result.exit_code, result.output


def test_create_prints_the_key_once_and_keeps_its_hash(db_path: Path, website: str) -> None:
    """The key is printed alone on one line; the database holds its SHA-256 and the name, never the key."""
    code, output = run(db_path, "create", "dashboard")
    assert code == 0, output
    key = output.strip()
    assert re.fullmatch(r"ffk_[A-Za-z0-9_-]{43}", key), output
    assert rows(db_path, "SELECT name, key_hash, last_used_at FROM api_key") == [
        ("dashboard", hashlib.sha256(key.encode()).hexdigest(), None)
    ]
    for path in db_path.parent.glob(db_path.name + "*"):
        assert key.encode() not in path.read_bytes()
    assert run(db_path, "create", "other")[1].strip() != key


def test_list_shows_names_and_dates_never_keys(db_path: Path, website: str) -> None:
    """`api-key list`: one line per key, by name, with when it was made and last used."""
    keys = [run(db_path, "create", name)[1].strip() for name in ("zeta", "alpha")]
    code, output = run(db_path, "list")
    assert code == 0
    lines = output.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["alpha", "zeta"]
    assert all(re.fullmatch(r"\S+\tcreated \d{4}-\d\d-\d\d \d\d:\d\d\tlast used never", line) for line in lines), output
    assert not any(key in output for key in keys)


def test_revoke_deletes_the_key_and_names_a_missing_one(db_path: Path, website: str) -> None:
    """`api-key revoke NAME` deletes it; an unknown name is a one-line error saying how to find the names."""
    run(db_path, "create", "dashboard")
    assert run(db_path, "revoke", "dashboard") == (0, "revoked dashboard\n")
    assert rows(db_path, "SELECT count(*) FROM api_key") == [(0,)]
    code, output = run(db_path, "revoke", "dashboard")
    assert code == 1 and output == "footfall: error: no API key named 'dashboard'; `footfall api-key list` shows them\n"


def test_bad_and_taken_names_are_refused(db_path: Path, website: str) -> None:
    """A name is 1 to 50 visible characters and unique; the errors say so in one line."""
    run(db_path, "create", "dashboard")
    code, output = run(db_path, "create", "dashboard")
    assert code == 1 and "an API key named 'dashboard' exists; revoke it first or pick another name" in output
    for name in ("x" * 51, " padded", "tab\there"):
        code, output = run(db_path, "create", name)
        assert code == 1 and "NAME must be 1 to 50 visible characters" in output, (name, output)
    assert rows(db_path, "SELECT name FROM api_key") == [("dashboard",)]

"""The README is checked like code: its settings table, its two set-up commands, and its SQL."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import collector
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def settings_table() -> str:
    """The README's settings table as it must read, made from collector.SETTINGS."""
    lines = ["| Option | Environment | Default | Meaning |", "|---|---|---|---|"]
    for s in collector.SETTINGS:
        flag = "--" + s.name.replace("_", "-")
        option = f"`{flag}` / `--no-{flag[2:]}`" if isinstance(s.default, bool) else f"`{flag}`"
        lines.append(f"| {option} | `{collector.env_name(s)}` | `{s.default}` | {s.help} |")
    return "\n".join(lines)


def test_readme_settings_table_matches_code() -> None:
    """Every setting, its variable, default and help appear in the README exactly as the code has them."""
    block = README.split("<!-- settings-table -->\n")[1].split("\n<!-- /settings-table -->")[0]
    assert block == settings_table()


def test_readme_starts_with_the_two_setup_commands() -> None:
    """The first two code blocks are the run command and the test command, and .ci/run runs that test command."""
    blocks = re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)
    run, test = blocks[0], blocks[1]
    assert README.index(run) < README.index("##")
    assert "footfall serve" in run and "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def test_readme_sql_examples_run(tmp_path: Path) -> None:
    """Each statement in the README's SQL block runs against a fresh database."""
    db = tmp_path / "docs.db"
    collector.prepare_database(str(db))
    sql_blocks = re.findall(r"```sql\n(.*?)\n```", README, flags=re.DOTALL)
    assert sql_blocks
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for block in sql_blocks:
            for statement in block.split(";"):
                body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
                if body:
                    conn.execute(body).fetchall()

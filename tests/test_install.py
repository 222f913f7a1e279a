"""footfall as users install it: a wheel in a fresh virtual environment, run from another directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

import collector
from conftest import FIREFOX, ROOT, free_port, rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """footfall's wheel, built once from this checkout (no build isolation: hatchling comes from the test extra)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (built,) = dist.glob("footfall-*.whl")
    return built


def serve_and_send(command: list[str], cwd: Path, env: dict[str, str], port: int, shell: bool = False) -> str:
    """Start ``command`` (ending in a footfall serve on ``port``) in ``cwd``, send it a pageview for the site it prints,
    stop it with SIGTERM (the whole process group for a ``shell`` command); return what it printed."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=shell
    )
    watchdog = threading.Timer(300, process.kill)  # an install that hangs fails the test instead of the suite
    watchdog.start()
    printed = []
    try:
        website = None
        for line in iter(process.stdout.readline, b""):  # type: ignore[union-attr]
            printed.append(line.decode(errors="replace"))
            if b"data-website-id=" in line:
                website = line.split(b'data-website-id="')[1].split(b'"')[0].decode()
                break
        assert website, "no script tag printed:\n" + "".join(printed)
        with httpx.Client() as http:
            response = http.post(
                f"http://127.0.0.1:{port}/api/send",
                headers={"User-Agent": FIREFOX},
                json={"type": "event", "payload": {"website": website, "url": "/installed"}},
            )
            assert response.status_code == 200, response.text
    finally:
        watchdog.cancel()
        if shell:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        code = process.wait(60)
    # footfall itself exits 0 once drained; a shell running it may be ended by the same signal.
    assert code == 0 or shell and code == -signal.SIGTERM, code
    return "".join(printed)


def test_pipx_runs_the_wheel(tmp_path: Path, wheel: Path) -> None:
    """As the README says: `pipx run --spec WHEEL footfall --version`, then `footfall serve` from that same install, in an
    empty directory (pipx's home and bin in temporary folders; dependencies come from the package index, as for anyone,
    once: the second `pipx run` reuses the environment the first one made)."""
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "PYTHONPATH": "",
    }
    env.pop("VIRTUAL_ENV", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    pipx = [sys.executable, "-m", "pipx", "run", "--spec", str(wheel), "footfall"]
    ran = subprocess.run([*pipx, "--version"], cwd=empty, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == f"footfall, version {collector.__version__}"
    port = free_port()
    printed = serve_and_send([*pipx, "serve", "--port", str(port)], empty, env, port)
    assert f"listening on http://127.0.0.1:{port}, database {empty / 'footfall.db'}" in printed
    assert sorted(p.name for p in empty.iterdir()) == ["footfall.db"]  # and its WAL checkpointed away on stop
    assert rows(empty / "footfall.db", "SELECT url_path FROM events") == [("/installed",)]
    (python,) = (tmp_path / "pipx" / ".cache").glob("*/bin/python")  # footfall ran from pipx's environment, not ours
    environment = python.parent.parent
    where = subprocess.run(
        [str(python), "-c", "import collector; print(collector.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=empty,
        env=env,
    ).stdout
    assert where.startswith(str(environment)), where


def test_readme_first_command_verbatim(tmp_path: Path) -> None:
    """The README's first command, pasted as is into a copy of the checkout: it installs footfall into .venv and serves
    (FOOTFALL_PORT picks a free port, so the command itself stays untouched)."""
    from test_docs import shell_blocks

    command = shell_blocks()[0]
    checkout = tmp_path / "footfall"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.db*", "dist", "build", ".pytest_cache"),
    )
    port = free_port()
    env = {**os.environ, "FOOTFALL_PORT": str(port), "PYTHONPATH": ""}
    env.pop("VIRTUAL_ENV", None)
    printed = serve_and_send(["bash", "-c", command], checkout, env, port, shell=True)
    assert f"listening on http://127.0.0.1:{port}" in printed
    assert rows(checkout / "footfall.db", "SELECT url_path FROM events") == [("/installed",)]


def test_wheel_installs_and_serves_from_anywhere(tmp_path: Path, wheel: Path) -> None:
    """The wheel carries schema.sql, the tracker and the units under footfall_assets/ (nothing generic in the root of
    site-packages); installed in a fresh venv, `footfall serve` started from another directory takes and stores an event."""
    names = zipfile.ZipFile(wheel).namelist()
    roots = {name.split("/")[0] for name in names}
    others = roots - {"collector.py", "footfall", "footfall_assets"}
    assert len(others) == 1 and others.pop().endswith(".dist-info"), roots
    for asset in ("schema.sql", "script.js", "footfall.service", "footfall-backup.service", "footfall-backup.timer"):
        assert f"footfall_assets/{asset}" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        timeout=600,
    )
    # The dependencies come from this test environment (a path entry, so its editable checkout is not picked up),
    # which keeps the test offline and fast; footfall itself is the wheel's.
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import collector; print(collector.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(site)), where
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [str(venv / "bin" / "footfall"), "serve", "--port", str(port)],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": ""},
    )
    try:
        website = None
        for line in iter(process.stdout.readline, b""):  # type: ignore[union-attr]
            if b"data-website-id=" in line:
                website = line.split(b'data-website-id="')[1].split(b'"')[0].decode()
                break
        assert website, "no script tag printed"
        with httpx.Client() as http:
            for _ in range(100):
                try:
                    http.get(f"http://127.0.0.1:{port}/api/heartbeat")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            response = http.post(
                f"http://127.0.0.1:{port}/api/send",
                headers={"User-Agent": FIREFOX},
                json={"type": "event", "payload": {"website": website, "url": "/installed"}},
            )
            assert response.status_code == 200, response.text
            script = http.get(f"http://127.0.0.1:{port}/script.js")
            assert script.status_code == 200 and b"umami" in script.content
            page = http.get(f"http://127.0.0.1:{port}/?period=today")  # templates, stylesheet and icon ship too
            assert page.status_code == 200 and "/installed" in page.text, page.text
            for static in ("/static/footfall.css", "/static/favicon.svg"):
                assert http.get(f"http://127.0.0.1:{port}{static}").status_code == 200
    finally:
        process.terminate()
        assert process.wait(30) == 0
    assert rows(elsewhere / "footfall.db", "SELECT url_path FROM events") == [("/installed",)]

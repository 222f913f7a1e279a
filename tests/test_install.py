"""footfall as users install it: a wheel in a fresh virtual environment, run from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from conftest import FIREFOX, ROOT, free_port, rows

pytestmark = pytest.mark.slow


def test_wheel_installs_and_serves_from_anywhere(tmp_path: Path) -> None:
    """The wheel carries schema.sql, the tracker and the units under footfall_assets/ (nothing generic in the root of
    site-packages); installed in a fresh venv, `footfall serve` started from another directory takes and stores an event."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("footfall-*.whl")
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

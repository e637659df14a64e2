"""`qnode serve`: a real process on loopback (the default), answering until it is stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from node.chain.localnode import free_port
from node.settings import ApiSettings

PASSWORD = "correct horse"


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_serve_listens_on_loopback_by_default(tmp_path: Path) -> None:
    assert ApiSettings().host == "127.0.0.1"
    env = {**os.environ, "QNODE_KEYSTORE_PASSWORD": PASSWORD, "NO_COLOR": "1"}
    directory = tmp_path / "aster"
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "init",
            "--name",
            "Aster",
            "--role",
            "manufacturer",
            "--dir",
            str(directory),
            "--kdf-iterations",
            "16",
            "--rpc-url",
            "embedded",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert init.returncode == 0, init.stderr
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "serve",
            "-c",
            str(directory / "qnode.toml"),
            "--port",
            str(port),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.json() == {"status": "ok", "member": "Aster"}
        missing = httpx.get(f"http://127.0.0.1:{port}/01/09506000134352", timeout=10)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = httpx.get(f"http://127.0.0.1:{port}/01/09506000134353", timeout=10)
        assert bad.status_code == 400
    finally:
        server.terminate()
        server.wait(10)

"""A real `t2v serve` process on loopback for the server tests: started, polled until ready, always killed."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(port: int, data_dir: Path, model: Path | None, *args: str) -> list[str]:
    model_args = ["--model", str(model)] if model else []  # none: the embedded model
    return [
        sys.executable,
        "-m",
        "t2v.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *model_args,
        "--device",
        "cpu",
        *args,
    ]


class Server:
    """`python -m t2v.cli serve` in a subprocess; `url`, `data_dir`; always killed at the end."""

    def __init__(self, data_dir: Path, model: Path | None, *args: str, env: dict | None = None):
        self.data_dir, self.model, self.args, self.env = data_dir, model, args, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 120):
        cmd = serve_command(self.port, self.data_dir, self.model, *self.args)
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})}
        )
        headers = (
            {"Authorization": f"Bearer {self.env['T2V_API_TOKEN']}"}
            if self.env and "T2V_API_TOKEN" in self.env
            else {}
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"the server exited:\n{self.log_tail()}"
            try:
                if httpx.get(f"{self.url}/readyz", headers=headers, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server was not ready in {timeout} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        self.log.flush()
        return (self.data_dir.parent / f"server-{self.port}.log").read_text(errors="replace")

    def log_tail(self) -> str:
        return self.log_text()[-3000:]

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def save_tiny_model(tmp: Path) -> Path:
    """The tiny test model in t2v's layout, with the Shapes region planner, as the embedded model has."""
    from tiny import tiny_pipeline

    from t2v.models.loading import save_model

    return save_model(tiny_pipeline(tmp, "bert"), tmp / "tiny-model", meta={"defaults": {"regions": "shapes"}})

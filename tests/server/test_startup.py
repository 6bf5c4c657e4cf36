"""`t2v serve` start-up refusals: each one line, exit 2, before any model is loaded (no server runs here).

A `jobs.db` that is not a job database is refused, never replaced; a data directory that cannot be
used, or a port in use, is said in one `error:` line; the "serving on" banner only comes once listening.
"""

import os
import socket
import sqlite3

import pytest
from typer.testing import CliRunner

from t2v.cli import app
from t2v.server.jobs import JobQueue


@pytest.fixture(autouse=True)
def no_model_load(monkeypatch):
    """Every refusal here comes before the model loads; getting that far fails the test (and serves nothing)."""

    def load(self):
        raise AssertionError("the model was loaded: the start-up checks let this through")

    monkeypatch.setattr(JobQueue, "load", load)
    monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ.get("GRADIO_TEMP_DIR", "/tmp"))  # serve() sets it: restored


def serve(*args: str):
    r = CliRunner().invoke(app, ["serve", "--device", "cpu", *args])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "serving on" not in r.output and not isinstance(r.exception, AssertionError), r.output
    return lines[0]


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "it is an empty file"),
        (b"these are not the jobs you are looking for\n" * 100, "file is not a database"),
        (None, "without t2v's jobs table"),  # another program's SQLite database
    ],
    ids=["empty", "text", "other-sqlite"],
)
def test_a_jobs_db_that_is_not_one_is_refused_not_replaced(tmp_path, content, words):
    data = tmp_path / "data"
    data.mkdir()
    db_path = data / "jobs.db"
    if content is None:
        with sqlite3.connect(db_path) as db:
            db.execute("CREATE TABLE users (name TEXT)")
        content = db_path.read_bytes()
    else:
        db_path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a t2v job database") as e:
        JobQueue(data, device="cpu")
    assert words in str(e.value) and "move it away" in str(e.value) and "\n" not in str(e.value)
    assert db_path.read_bytes() == content  # untouched
    line = serve("--data-dir", str(data))
    assert "is not a t2v job database" in line and db_path.read_bytes() == content


def test_a_new_data_dir_gets_a_whole_database(tmp_path):
    queue = JobQueue(tmp_path / "data", device="cpu")
    assert queue.list() == ([], 0) and not list((tmp_path / "data").glob(".jobs.db.new*"))
    queue.db.close()
    queue._lock_file.close()


def test_a_data_dir_that_cannot_be_used(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file, not a directory" in serve("--data-dir", str(a_file))
    assert "cannot create the data directory" in serve("--data-dir", str(a_file / "data"))
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_access = os.access
    # as a user without write permission sees it (root, as in CI, may write anywhere)
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(read_only) else real_access(p, mode))
    assert "is not readable and writable by this user" in serve("--data-dir", str(read_only))
    assert not (read_only / "jobs.db").exists()


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = serve("--data-dir", str(tmp_path / "data"), "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line, line

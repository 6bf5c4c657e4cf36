"""The job database on disk: opened only if it is one (never silently replaced), and rows made safe to send.

A data directory that cannot be used, or a `jobs.db` that is not a t2v job database (empty, another
file, damaged), is a one-line ValueError: `t2v serve` prints it and exits 2, and the file stays as it was.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
    "status TEXT NOT NULL, params TEXT NOT NULL, source TEXT, created REAL, started REAL, finished REAL, "
    "attempts INTEGER DEFAULT 0, error TEXT, video TEXT, result TEXT)",
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq)",
    "CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, kind TEXT NOT NULL, format TEXT NOT NULL, "
    "bytes INTEGER, frames INTEGER, width INTEGER, height INTEGER, fps REAL, created REAL)",
)
COLUMNS = {"seq", "id", "status", "params", "source", "created", "started", "finished", "attempts", "error"}
COLUMNS |= {"video", "result"}
MAX_ERROR_CHARS = 500  # a job's error as stored and shown


def check_data_dir(data_dir: Path) -> None:
    """The data directory exists (created if not) and this process may read and write it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "videos").mkdir(exist_ok=True)
    except FileExistsError:
        raise ValueError(f"the data directory {data_dir} is a file, not a directory") from None
    except OSError as e:
        raise ValueError(f"cannot create the data directory {data_dir}: {e.strerror}") from None
    for path in (data_dir, data_dir / "videos"):
        if not path.is_dir():
            raise ValueError(f"{path} is not a directory")
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise ValueError(f"the data directory {path} is not readable and writable by this user")


def open_job_db(path: Path) -> sqlite3.Connection:
    """The job database at `path`, created (whole, in one rename) if there is none.

    A file there that is not a t2v job database is refused, not replaced: an empty `jobs.db` is
    most likely a history that was lost, and starting a new one in its place would hide that.
    """
    if not path.exists():
        _create(path)
    hint = "move it away to start a new job history"
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as e:
        raise ValueError(f"cannot open the job database {path}: {e}") from None
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        if columns and db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise ValueError(f"the job database {path} is damaged (sqlite quick_check); {hint}")
    except sqlite3.DatabaseError as e:
        db.close()
        raise ValueError(f"{path} is not a t2v job database ({e}); {hint}") from None
    except ValueError:
        db.close()
        raise
    if not COLUMNS <= columns:
        db.close()
        what = "an empty file" if path.stat().st_size == 0 else "a database without t2v's jobs table"
        raise ValueError(f"{path} is not a t2v job database: it is {what}; {hint}")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an answered POST survives a power cut, not only kill -9
    except sqlite3.Error as e:
        db.close()
        raise ValueError(f"cannot write the job database {path}: {e}") from None
    return db


def _create(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.new")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            for statement in SCHEMA:
                db.execute(statement)
        finally:
            db.close()
        os.replace(tmp, path)
    except (OSError, sqlite3.Error) as e:
        raise ValueError(f"cannot create the job database {path}: {e}") from None


def loads(text, default):
    """A JSON column, or `default` when it is missing or not JSON (a damaged row is still listed)."""
    try:
        value = json.loads(text) if text else default
    except (TypeError, ValueError, RecursionError):
        return default
    return value if isinstance(value, type(default)) else default


def json_safe(value):
    """A value any JSON encoder writes: strings valid UTF-8 (a lone surrogate written as \\udXXX),
    no NaN or infinity. Rows written by older versions may hold either; listing must not fail on them."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(json_safe(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value

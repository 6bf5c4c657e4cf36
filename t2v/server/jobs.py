"""A durable job queue for videos and pictures: SQLite (WAL) in the data directory, one worker per device.

Every accepted job is a row before the client hears about it, so nothing accepted is lost: after a
crash, jobs that were running go back to the queue and run again (with the same seed, so they make
the same video); finished ones are still served from `<data dir>/videos/`. Progress of the running
job lives in memory only (it means nothing after a restart). What a job makes is its task
(t2v.server.tasks): a video from the text-to-video model, a picture or a zero-shot video from the
text-to-image model, a video made from an upload (t2v.server.uploads): edited, or following its control
maps, or a video model tuned on an uploaded clip (t2v.server.tune_tasks), kept in `<data dir>/models/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from t2v.generate import get_pipeline
from t2v.models.loading import DEFAULT_EDIT_MODEL_NAME, DEFAULT_IMAGE_MODEL_NAME, default_model_installed, pick_device
from t2v.server.limits import PARAM_FIELDS, JobError, Limits, check_params, default_max_cost  # noqa: F401
from t2v.server.store import MAX_ERROR_CHARS, SCHEMA, check_data_dir, json_safe, loads, open_job_db
from t2v.server.tasks import SUFFIXES, check_job, run_job, task_of, total_steps
from t2v.server.tune_tasks import TunedModels
from t2v.server.uploads import Uploads
from t2v.server.video_tasks import CONTROL_SUFFIX, VIDEO_TASKS, model_spec


log = logging.getLogger("t2v.server")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
MAX_ATTEMPTS = 3  # a job that was interrupted this often (e.g. it kills the server) fails instead of running again
SWEEP_SECONDS = 60.0  # how often an idle worker removes the uploads no job used within their TTL


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Stopped(Exception):
    """Raised inside the denoising loop to stop a job (cancelled, or the server is shutting down)."""


def _iso(ts: float | None) -> str | None:
    if not isinstance(ts, (int, float)) or not 0 <= ts < 1e11:  # (None, or a damaged row's)
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JobQueue:
    """Jobs in SQLite plus the one worker thread that runs them on this process's device."""

    def __init__(
        self,
        data_dir: str | Path,
        model: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        limits: Limits | None = None,
        image_model: str | None = None,
        edit_model: str | None = None,
        controlnets: dict[str, str] | None = None,
        depth_model: str | None = None,
    ):
        """`model`: the text-to-video model, `image_model`: the text-to-image model of image, zero-shot and
        control jobs, `edit_model`: the Instruct-Pix2Pix model of edit jobs (None: the embedded ones);
        `controlnets`: the ControlNet folder of each control kind this server runs (edges, depth, pose);
        `depth_model`: the depth-estimation model of depth jobs from a normal video."""
        self.data_dir = Path(data_dir).resolve()
        self.videos = self.data_dir / "videos"
        check_data_dir(self.data_dir)
        try:
            self._lock_file = open(self.data_dir / "server.lock", "a+")
        except OSError as e:
            raise ValueError(f"cannot write in the data directory {self.data_dir}: {e.strerror}") from None
        try:  # one server per data directory: two would run the same jobs (released by the OS when this process dies)
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"the data directory {self.data_dir} is in use by another t2v serve") from None
        try:
            self.model, self.device, self.dtype = model, pick_device(device), dtype
            self.image_model, self.edit_model, self.depth_model = image_model, edit_model, depth_model
            self.controlnets = dict(controlnets or {})
            limits = limits or Limits()
            self.limits = dataclasses.replace(limits, max_cost=limits.max_cost or default_max_cost(self.device))
            self.db = self._open_db()
            self.uploads = Uploads(self.data_dir, self.db, self.lock, self.limits)
            self.tuned_models = TunedModels(self.data_dir, self.db, self.lock)
            self.tuned_models.sweep()  # what no job owns (a tune that stopped with the server resumes)
        except BaseException:
            self._lock_file.close()  # (the lock goes with it: a refused start-up holds nothing)
            raise
        for tmp in [*self.videos.glob(".*.tmp-*"), *self.videos.glob(".*.png.tmp")]:  # half-written files
            tmp.unlink(missing_ok=True)
        self.live: dict[str, dict] = {}  # progress of the running job
        self.cancelled: set[str] = set()
        self.changes = 0  # bumped on every status change (long polls look at it before reading the database)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pipe = self.image_pipe = self.edit_spec = None
        self._swept = time.monotonic()
        self._image_lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def _open_db(self) -> sqlite3.Connection:
        """The job database, checked (see `open_job_db`); jobs a crash interrupted go back to the queue."""
        path = self.data_dir / "jobs.db"
        db = open_job_db(path)
        db.row_factory = sqlite3.Row
        self.lock = threading.Lock()
        try:
            with self.lock:
                for statement in SCHEMA:
                    db.execute(statement)
                # Interrupted by a crash or a stop: run again, unless it keeps killing the server
                db.execute(
                    "UPDATE jobs SET status='failed', error=?, finished=? WHERE status='running' AND attempts>=?",
                    (f"interrupted {MAX_ATTEMPTS} times (the server stopped while it ran)", time.time(), MAX_ATTEMPTS),
                )
                db.execute("UPDATE jobs SET status='queued', started=NULL WHERE status='running'")
        except sqlite3.Error as e:
            db.close()
            raise ValueError(f"cannot write the job database {path}: {e}") from None
        return db

    # ------------------------------------------------------------------ model and worker
    def load(self):
        """Load the model (once per process; `run_generate` finds it in the same cache)."""
        self.pipe = get_pipeline(self.model, self.device, self.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.base_scheduler = self.pipe.scheduler
        return self.pipe

    def load_image(self):
        """Load the text-to-image model (once per process, as `load`); a ModelError if it cannot be."""
        from t2v.zero_shot import get_image_pipeline

        with self._image_lock:
            if self.image_pipe is None:
                pipe = get_image_pipeline(self.image_model, self.device, self.dtype)
                pipe.set_progress_bar_config(disable=True)
                self.image_pipe = pipe
        return self.image_pipe

    def image_pipeline(self):
        """The text-to-image model, loaded on first use; a JobError on "task" when this server has none."""
        try:
            return self.image_pipe if self.image_pipe is not None else self.load_image()
        except (ValueError, OSError) as e:  # (ModelError is a ValueError)
            why = f"this server cannot load its text-to-image model ({e})"
            if self.image_model is None and not default_model_installed(DEFAULT_IMAGE_MODEL_NAME):
                why = f"the embedded {DEFAULT_IMAGE_MODEL_NAME} is not installed on this server"
            raise JobError(
                "task",
                f"image, zero-shot, control and tune jobs need a text-to-image model: {why} (see t2v serve "
                "--image-model)",
            ) from None

    def load_edit(self):
        """Load the edit model (t2v.video_jobs keeps it; the queue keeps what checking a job needs of it)."""
        from t2v.video_jobs import get_edit_pipeline

        with self._image_lock:
            if self.edit_spec is None:
                self.edit_spec = model_spec(get_edit_pipeline(self.edit_model, self.device, self.dtype))
        return self.edit_spec

    def edit_pipeline(self):
        """The edit model's defaults and configs (`model_spec`); a JobError on "task" when this server has none."""
        try:
            return self.edit_spec if self.edit_spec is not None else self.load_edit()
        except (ValueError, OSError) as e:
            why = f"this server cannot load its edit model ({e})"
            if self.edit_model is None and not default_model_installed(DEFAULT_EDIT_MODEL_NAME):
                why = f"the embedded {DEFAULT_EDIT_MODEL_NAME} is not installed on this server"
            raise JobError(
                "task", f"edit jobs need an Instruct-Pix2Pix model: {why} (see t2v serve --edit-model)"
            ) from None

    def start(self):
        self.thread = threading.Thread(target=self._work, name="t2v-worker", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5.0):
        """Stop taking work; a running job stops at its next step and goes back to the queue."""
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)

    @property
    def ready(self) -> bool:
        return (
            self.pipe is not None and self.thread is not None and self.thread.is_alive() and not self.stopping.is_set()
        )

    def _next(self):
        with self.lock:
            row = self.db.execute("SELECT * FROM jobs WHERE status='queued' ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                self.db.execute(
                    "UPDATE jobs SET status='running', started=?, attempts=attempts+1 WHERE id=?",
                    (time.time(), row["id"]),
                )
        return row

    def _work(self):
        while not self.stopping.is_set():
            row = self._next()
            if row is None:
                self.wake.wait(1.0)
                self.wake.clear()
                if time.monotonic() - self._swept > SWEEP_SECONDS:
                    self._swept = time.monotonic()
                    with contextlib.suppress(sqlite3.Error, OSError):
                        self.uploads.sweep()
                continue
            try:
                self._run(row["id"], loads(row["params"], {}))
            except Exception as e:  # noqa: BLE001 - e.g. a full disk: the job fails, the worker goes on
                log.warning("job %s: %s", row["id"], e)
                with contextlib.suppress(sqlite3.Error), self.lock:
                    self.db.execute(
                        "UPDATE jobs SET status='failed', error=?, finished=? WHERE id=? AND status='running'",
                        (f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS], time.time(), row["id"]),
                    )
                self.changes += 1
                self.stopping.wait(1.0)

    def _run(self, job_id: str, p: dict):
        start = time.time()
        self.live[job_id] = {"step": 0, "total": total_steps(p), "eta": None}

        def on_step(step, total):
            if job_id in self.cancelled or self.stopping.is_set():
                raise Stopped()
            elapsed = time.time() - start
            self.live[job_id] = {"step": step, "total": total, "eta": elapsed / step * (total - step)}

        # the file's (a tuned model's folder's) name comes from the server's UUID, never from the request
        task = task_of(p)
        out = (
            self.tuned_models.path(job_id) if task == "tune" else self.videos / f"{job_id}{SUFFIXES.get(task, '.mp4')}"
        )
        status, error, result = "succeeded", None, None
        try:
            made = run_job(p, out, self, on_step)
            result = json.dumps({**made, "seconds": round(time.time() - start, 3)})
        except Stopped:
            status = "queued" if job_id not in self.cancelled else "cancelled"
            stopped_at = self.live.get(job_id, {}).get("step", 0) + 1  # the step that had just finished
        except Exception as e:  # noqa: BLE001 - a job's failure is reported in the job, the worker goes on
            status, error = "failed", f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)
            error = error[:MAX_ERROR_CHARS]
        finally:
            self.live.pop(job_id, None)
        with self.lock:  # (a job cancelled meanwhile stays cancelled: its row is no longer 'running')
            if status == "cancelled":  # cancel() has set the row; add where the job actually stopped
                cur = self.db.execute(
                    "UPDATE jobs SET result=json_set(COALESCE(result, '{}'), '$.stopped_at_step', ?) WHERE id=?",
                    (stopped_at, job_id),
                )
            elif status == "queued":  # the server is stopping: back to the queue, and this try does not count
                cur = self.db.execute(
                    "UPDATE jobs SET status='queued', started=NULL, attempts=attempts-1 "
                    "WHERE id=? AND status='running'",
                    (job_id,),
                )
            else:
                cur = self.db.execute(
                    "UPDATE jobs SET status=?, error=?, result=?, video=?, finished=? WHERE id=? AND status='running'",
                    (status, error, result, out.name if status == "succeeded" and task != "tune" else None,
                     time.time(), job_id),
                )  # fmt: skip
        self.changes += 1
        if task == "tune" and (status not in ("succeeded", "queued") or cur.rowcount == 0):
            self.tuned_models.remove(job_id)  # (back in the queue: its work folder stays, to resume from)
        elif task != "tune" and (status != "succeeded" or cur.rowcount == 0):
            for path in (out, out.with_name(job_id + CONTROL_SUFFIX)):
                path.unlink(missing_ok=True)
        self.cancelled.discard(job_id)

    # ------------------------------------------------------------------ the API's operations
    def submit(self, body: dict, source: str = "api") -> dict:
        """Check the parameters and queue a job. Raises JobError (-> 422) or QueueFull (-> 429)."""
        params = check_job(body, self.pipe, self.image_pipeline, self.limits, self.device, server=self)
        job_id = str(uuid.uuid4())
        with self.lock:
            upload = params.get("source") if params["task"] in (*VIDEO_TASKS, "tune") else None  # (not `source`)
            if upload is not None and not self.db.execute("SELECT 1 FROM uploads WHERE id=?", (upload,)).fetchone():
                raise JobError("source", f"no upload {upload}: it was deleted meanwhile")
            model = params.get("tuned_model")
            if model is not None and not self.db.execute("SELECT 1 FROM jobs WHERE id=?", (model,)).fetchone():
                raise JobError("tuned_model", f"tune job {model} was deleted meanwhile")
            queued = self.db.execute("SELECT COUNT(*) FROM jobs WHERE status='queued'").fetchone()[0]
            if queued >= self.limits.max_queue:
                raise QueueFull(self._retry_after())
            self.db.execute(
                "INSERT INTO jobs (id, status, params, source, created) VALUES (?, 'queued', ?, ?, ?)",
                (job_id, json.dumps(params), source, time.time()),
            )
        self.wake.set()
        return self.get(job_id)

    def _retry_after(self) -> int:
        rows = self.db.execute(
            "SELECT finished - started FROM jobs WHERE status='succeeded' AND finished - started >= 0 "
            "ORDER BY seq DESC LIMIT 20"
        ).fetchall()
        mean = sum(r[0] for r in rows) / len(rows) if rows else 10.0
        return max(1, math.ceil(mean))  # about when the running job ends and a place frees up

    def cancel(self, job_id: str) -> dict | None:
        """Cancel a queued or running job (a running one stops at its next denoising step)."""
        with self.lock:
            row = self.db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] in ("queued", "running"):
                live = self.live.get(job_id)
                if row["status"] == "running":
                    self.cancelled.add(job_id)
                self.db.execute(
                    "UPDATE jobs SET status='cancelled', finished=?, result=? "
                    "WHERE id=? AND status IN ('queued', 'running')",
                    (time.time(), json.dumps({"cancelled_at_step": live["step"] if live else 0}), job_id),
                )
                self.changes += 1
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            position = None
            if row is not None and row["status"] == "queued":
                position = self.db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status='queued' AND seq<?", (row["seq"],)
                ).fetchone()[0]
        return None if row is None else self._public(row, position)

    def list(self, limit: int = 20, offset: int = 0, status: str | None = None) -> tuple[list[dict], int]:
        where, args = ("WHERE status=?", (status,)) if status else ("", ())
        with self.lock:
            total = self.db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = self.db.execute(
                f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?", (*args, limit, offset)
            ).fetchall()
        return [self._public(r) for r in rows], total

    def delete(self, job_id: str) -> bool:
        """Remove a job and its files, whatever its state (a running one stops at its next step); False if
        there is no such job. For any job, one whose row can no longer be run or shown included."""
        with self.lock:
            row = self.db.execute("SELECT status, params FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return False
            if row["status"] == "running":
                self.cancelled.add(job_id)
            self.db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            self.uploads.release(loads(row["params"], {}).get("source"))  # unless another job uses it
            self.changes += 1
        self.tuned_models.remove(job_id)  # a tune job's model (the videos made from it stay)
        for path in self.videos.glob(f"{job_id}.*"):  # the mp4 and its conversions (job_id: a UUID)
            path.unlink(missing_ok=True)
        return True

    def counts(self) -> dict:
        with self.lock:
            return dict(self.db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    def video_path(self, job_id: str) -> Path | None:
        """The finished video of a job, inside the data directory (None if there is none)."""
        return self._file(job_id, ".mp4")

    def control_path(self, job_id: str) -> Path | None:
        """The control maps a finished control job followed (None if there are none)."""
        video = self.video_path(job_id)
        path = video.with_name(job_id + CONTROL_SUFFIX) if video is not None else None
        return path if path is not None and path.is_file() else None

    def image_path(self, job_id: str) -> Path | None:
        """The finished picture of an image job, inside the data directory (None if there is none)."""
        return self._file(job_id, ".png")

    def _file(self, job_id: str, suffix: str) -> Path | None:
        with self.lock:
            row = self.db.execute("SELECT video FROM jobs WHERE id=? AND status='succeeded'", (job_id,)).fetchone()
        if row is None or not row["video"]:
            return None
        path = (self.videos / row["video"]).resolve()
        return path if path.parent == self.videos and path.suffix == suffix and path.is_file() else None

    def _public(self, row, position: int | None = None) -> dict:
        """A row as the API shows it. Defensive: a row it cannot fully read (written by an older version,
        or damaged) is still shown, with what can be read, so listing never fails on one job."""
        params, result = loads(row["params"], {}), loads(row["result"], {}) or None
        live = self.live.get(row["id"]) if row["status"] == "running" else None
        total, task = total_steps(params), task_of(params)
        done = row["status"] == "succeeded"
        step, total = (live["step"], live["total"] or 0) if live else (0, total)
        if done:
            step = total
        return json_safe(
            {
                "id": row["id"],
                "task": task,
                "status": row["status"],
                "progress": round(step / total, 4) if total else 0.0,
                "step": step,
                "total_steps": total,
                "eta_seconds": None if not live or live["eta"] is None else round(live["eta"], 2),
                "queue_position": position,
                "seed": params.get("seed"),
                "error": row["error"] if isinstance(row["error"], str) else None,
                "params": params,
                "result": result,
                "video_url": f"/v1/jobs/{row['id']}/video" if done and task not in ("image", "tune") else None,
                "image_url": f"/v1/jobs/{row['id']}/image" if done and task == "image" else None,
                "control_url": f"/v1/jobs/{row['id']}/control" if done and task == "control" else None,
                "source": row["source"],
                "attempts": row["attempts"],
                "created_at": _iso(row["created"]),
                "started_at": _iso(row["started"]),
                "finished_at": _iso(row["finished"]),
            }
        )

"""The job queue's start-up on a data directory left by a server that stopped while jobs ran.

Fast: a JobQueue is constructed on a jobs.db written with sqlite3 (no model is loaded, no worker runs).
"""

import io
import json
import sqlite3
import time

import pytest

from t2v.server.jobs import MAX_ATTEMPTS, JobQueue


PARAMS = {
    "prompt": "a red circle moving right",
    "num_frames": 4,
    "height": 32,
    "width": 32,
    "num_inference_steps": 5,
    "guidance_scale": 2.5,
    "seed": 7,
    "fps": 8.0,
}


def make_data_dir(path, rows):
    """A data directory whose jobs.db holds `rows` (id, status, attempts), as a server that died leaves it."""
    queue = JobQueue(path, device="cpu")  # creates the schema
    close(queue)
    db = sqlite3.connect(path / "jobs.db", isolation_level=None)
    now = time.time()
    for job_id, status, attempts in rows:
        started = now - 10 if status in ("running", "succeeded") else None
        finished = now - 5 if status == "succeeded" else None
        db.execute(
            "INSERT INTO jobs (id, status, params, source, created, started, finished, attempts, video) "
            "VALUES (?, ?, ?, 'api', ?, ?, ?, ?, ?)",
            (
                job_id,
                status,
                json.dumps(PARAMS),
                now - 20,
                started,
                finished,
                attempts,
                f"{job_id}.mp4" if status == "succeeded" else None,
            ),
        )
    db.close()
    return path


def close(queue):
    """Release what a stopped server's process releases: the database connection and the data-dir lock
    (every attribute of the queue that can be closed; gc.collect() would do it too, 100 times slower)."""
    resources = [v for v in vars(queue).values() if isinstance(v, (sqlite3.Connection, io.IOBase))]
    assert len(resources) >= 2
    for resource in resources:
        resource.close()


def test_interrupted_jobs_run_again_until_max_attempts(tmp_path):
    data = make_data_dir(
        tmp_path / "data",
        [
            ("done", "succeeded", 1),
            ("first-try", "running", 1),
            ("second-try", "running", MAX_ATTEMPTS - 1),
            ("waiting", "queued", 0),
            ("last-try", "running", MAX_ATTEMPTS),
            ("too-many", "running", MAX_ATTEMPTS + 1),
        ],
    )
    queue = JobQueue(data, device="cpu")
    jobs = {j["id"]: j for j in queue.list(limit=100)[0]}
    assert {k: (j["status"], j["attempts"]) for k, j in jobs.items()} == {
        "done": ("succeeded", 1),
        "first-try": ("queued", 1),  # interrupted: back in the queue, the attempt kept
        "second-try": ("queued", MAX_ATTEMPTS - 1),
        "waiting": ("queued", 0),
        "last-try": ("failed", MAX_ATTEMPTS),  # interrupted MAX_ATTEMPTS times: fails instead of running again
        "too-many": ("failed", MAX_ATTEMPTS + 1),
    }
    for job_id in ("last-try", "too-many"):
        failed = queue.get(job_id)
        assert failed["error"] == f"interrupted {MAX_ATTEMPTS} times (the server stopped while it ran)", failed
        assert failed["finished_at"] is not None and failed["video_url"] is None
    for job_id in ("first-try", "second-try"):
        again = queue.get(job_id)
        assert again["error"] is None and again["started_at"] is None and again["finished_at"] is None
        assert again["seed"] == PARAMS["seed"] and again["params"] == PARAMS  # runs again as it was asked
    # the queue keeps its order (by submission): the re-queued jobs were submitted before "waiting"
    assert [queue.get(j)["queue_position"] for j in ("first-try", "second-try", "waiting")] == [0, 1, 2]
    assert queue.get("done")["video_url"] == "/v1/jobs/done/video"
    assert queue.list(status="running")[1] == 0
    close(queue)


def test_a_clean_restart_changes_nothing(tmp_path):
    data = make_data_dir(tmp_path / "data", [("done", "succeeded", 1), ("waiting", "queued", 0)])
    close(JobQueue(data, device="cpu"))
    queue = JobQueue(data, device="cpu")
    jobs = [(j["id"], j["status"], j["attempts"]) for j in queue.list()[0]]
    assert jobs == [("waiting", "queued", 0), ("done", "succeeded", 1)]
    close(queue)


def test_start_up_removes_half_written_videos_only(tmp_path):
    data = make_data_dir(tmp_path / "data", [("done", "succeeded", 1), ("cut", "running", 1)])
    videos = data / "videos"
    kept = [videos / "done.mp4", videos / "notes.tmp-1", videos / ".hidden"]
    half_written = [videos / ".cut.mp4.tmp-1a2b3c4d", videos / ".cut.tmp-9f8e7d6c.webm"]  # as t2v.video_io names them
    for path in kept + half_written:
        path.write_bytes(b"x")
    queue = JobQueue(data, device="cpu")
    assert sorted(p.name for p in videos.iterdir()) == sorted(p.name for p in kept)
    assert queue.get("cut")["status"] == "queued"
    close(queue)


def test_one_server_per_data_dir(tmp_path):
    first = JobQueue(tmp_path / "data", device="cpu")
    with pytest.raises(ValueError, match="is in use by another t2v serve"):
        JobQueue(tmp_path / "data", device="cpu")
    close(JobQueue(tmp_path / "other", device="cpu"))  # another directory is fine
    close(first)
    close(JobQueue(tmp_path / "data", device="cpu"))  # the lock goes with the server that held it

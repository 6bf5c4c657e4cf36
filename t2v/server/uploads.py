"""Uploaded source files of edit and control jobs (`POST /v1/uploads`, and the web app's file fields).

A file is kept only if t2v can use it: a video (.mp4, .webm, .gif) whose bytes are that format and
that decodes (`t2v.video_io.read_video`) within bounds (frames, size, decoded bytes, checked while it
streams, before it is read whole), or OpenPose JSON (.json) in the shape `t2v.controls.read_openpose_json`
reads. It is stored in `<data dir>/uploads/` under a random id (never the client's file name), recorded in
the job database, and referenced by jobs by its id (their `source`). It goes with the last job that uses
it (`DELETE /v1/jobs/{id}?purge=true`), by `DELETE /v1/uploads/{id}` (refused while a queued or running
job uses it), or, when no job has used it, after the server's upload TTL (`Limits.upload_ttl`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from t2v.pipelines.long_video.storyboard import excerpt
from t2v.server.limits import Limits


FORMATS = {".mp4": "mp4", ".webm": "webm", ".gif": "gif", ".json": "json"}  # a file name's suffix -> format
MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif", "json": "application/json"}
MAX_SOURCE_SIDE = 8192  # pixels, a source frame's height or width
MAX_SOURCE_FRAMES = 4096  # frames of a source video or OpenPose file (t2v.video_jobs.MAX_SOURCE_FRAMES)
MAX_DECODED_BYTES = 1024**3  # a source video decoded, frames x height x width x 3 (a job holds it in memory)
MP4_BOXES = (b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide")  # an ISO-BMFF file's first box
CHUNK = 1 << 20
# A job uses an upload when its params' "source" is the upload's id (a damaged row's params are skipped).
USED_BY = (
    "SELECT {what} FROM jobs WHERE (CASE WHEN json_valid(params) THEN json_extract(params, '$.source') END) = {id}"
)


class UploadError(Exception):
    """An upload refused: `status` (404, 409, 413, 422, 429) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def format_of(name: str | None) -> str:
    """The format a client's file name says (only its suffix is looked at), or a 422."""
    suffix = Path(str(name or "")).suffix.lower()
    if suffix not in FORMATS:
        raise UploadError(
            422,
            f"the file must be a video (.mp4, .webm, .gif) or OpenPose JSON (.json); got a file named "
            f"{excerpt(str(name or ''))}",
        )
    return FORMATS[suffix]


def _looks_like(head: bytes, fmt: str) -> bool:
    """Whether a file's first bytes are those of `fmt` (so ffmpeg reads it as that format, and nothing else)."""
    if fmt == "mp4":
        return len(head) >= 8 and head[4:8] in MP4_BOXES
    if fmt == "webm":
        return head.startswith(b"\x1a\x45\xdf\xa3")  # EBML
    if fmt == "gif":
        return head.startswith((b"GIF87a", b"GIF89a"))
    return True  # JSON: parsed


def _check_bounds(frames: int, width: int, height: int) -> None:
    if not (0 < width <= MAX_SOURCE_SIDE and 0 < height <= MAX_SOURCE_SIDE):
        raise UploadError(422, f"the video is {width}x{height}; at most {MAX_SOURCE_SIDE} pixels a side")
    if frames > MAX_SOURCE_FRAMES:
        raise UploadError(422, f"the video has more than {MAX_SOURCE_FRAMES} frames; at most {MAX_SOURCE_FRAMES}")
    if frames * width * height * 3 > MAX_DECODED_BYTES:
        top = f"{MAX_DECODED_BYTES / 2**30:.3g} GiB"
        raise UploadError(
            422,
            f"the video is more than {top} decoded ({frames} frames of {width}x{height} so far); at most {top}: "
            "send fewer frames or pixels",
        )


def _stream_bounds(path: Path, fmt: str) -> None:
    """Decode the video frame by frame (never held whole) and refuse it past the bounds."""
    if fmt == "gif":
        from PIL import Image

        with Image.open(path) as im:
            _check_bounds(getattr(im, "n_frames", 1), *im.size)
        return
    import imageio_ffmpeg

    frames = imageio_ffmpeg.read_frames(str(path), input_params=["-f", "mov" if fmt == "mp4" else "matroska"])
    try:
        width, height = next(frames)["size"]
        _check_bounds(1, width, height)
        for count, _ in enumerate(frames, 1):
            _check_bounds(count, width, height)
    finally:
        frames.close()


def check_video(path: Path, fmt: str) -> dict:
    """A video file's frames, size and fps, or a 422 saying why t2v cannot use it."""
    from t2v.video_io import read_video

    with open(path, "rb") as f:
        head = f.read(16)
    if not _looks_like(head, fmt):
        raise UploadError(422, f"the file is named .{fmt} but is not {_a(fmt)} video")
    try:
        _stream_bounds(path, fmt)
        frames, fps = read_video(path)
    except UploadError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a decoder says of a file it cannot read: its last line
        lines = [line for line in str(e).replace(str(path), "the file").splitlines() if line.strip()]
        why = _clip(lines[-1] if lines else type(e).__name__)
        raise UploadError(422, f"not {_a(fmt)} video t2v can read: {why}") from None

    if len(frames) == 0:
        raise UploadError(422, "the video has no frames")
    return {"kind": "video", "frames": len(frames), "height": frames.shape[1], "width": frames.shape[2], "fps": fps}


def check_pose(path: Path) -> dict:
    """An OpenPose JSON file's frames, or a 422 saying why it is not one."""
    from t2v.controls import read_openpose_json

    try:
        poses = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UploadError(422, f"not OpenPose JSON: the file is not valid JSON ({_clip(str(e), 120)})") from None
    try:
        frames = read_openpose_json(poses, size=(1, 1), pose_size=(1, 1))
    except (ValueError, TypeError, RecursionError) as e:
        raise UploadError(422, f"not OpenPose JSON: {_clip(str(e))}") from None
    if len(frames) > MAX_SOURCE_FRAMES:
        raise UploadError(422, f"the poses have {len(frames)} frames; at most {MAX_SOURCE_FRAMES}")
    return {"kind": "pose", "frames": len(frames), "height": None, "width": None, "fps": None}


def _copy(stream: BinaryIO, target: Path, limit: int) -> int:
    """Copy a file, refused (413) as soon as it is longer than `limit` bytes."""
    size = 0
    with open(target, "xb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise UploadError(413, f"the file is larger than {_mb(limit)} (this server's --max-upload-mb)")
            out.write(chunk)
    if size == 0:
        raise UploadError(422, "the file is empty")
    return size


def _a(fmt: str) -> str:
    return f"an {fmt}" if fmt == "mp4" else f"a {fmt}"


def _clip(text: str, chars: int = 200) -> str:
    """One line of at most `chars` characters (a decoder's message may quote what it was given)."""
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 3] + "..."


def _mb(size: int) -> str:
    return f"{size / 2**20:.3g} MB"


class Uploads:
    """The uploads of one data directory, recorded in its job database (`db`, guarded by `lock`)."""

    def __init__(self, data_dir: Path, db, lock: threading.Lock, limits: Limits):
        self.folder, self.db, self.lock, self.limits = Path(data_dir) / "uploads", db, lock, limits
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create {self.folder}: {e.strerror}") from None
        self._checking = threading.BoundedSemaphore(1)  # files decoded at once (each up to MAX_DECODED_BYTES)
        with self.lock:
            known = {r[0] for r in self.db.execute("SELECT id FROM uploads")}
        for path in self.folder.iterdir():  # half-written files, and files whose row a crash lost
            if path.is_file() and path.name.split(".")[0] not in known:
                path.unlink(missing_ok=True)

    def add(self, stream: BinaryIO, name: str | None) -> dict:
        """Check and keep an uploaded file; its record. Raises UploadError (413, 422, 429)."""
        fmt = format_of(name)
        self.sweep()
        with self.lock:
            waiting = self.db.execute(
                f"SELECT COUNT(*) FROM uploads WHERE NOT EXISTS ({USED_BY.format(what='1', id='uploads.id')})"
            ).fetchone()[0]
        if waiting >= self.limits.max_uploads:
            raise UploadError(
                429, f"{waiting} uploads are waiting for a job; use or delete some (DELETE /v1/uploads/{{id}}) first"
            )
        upload_id = str(uuid.uuid4())
        tmp = self.folder / f".{upload_id}.tmp.{fmt}"  # (the suffix tells read_video the format)
        try:
            size = _copy(stream, tmp, self.limits.max_upload_bytes)
            with self._checking:
                meta = check_pose(tmp) if fmt == "json" else check_video(tmp, fmt)
            os.replace(tmp, self.folder / f"{upload_id}.{fmt}")
            with self.lock:
                self.db.execute(
                    "INSERT INTO uploads (id, kind, format, bytes, frames, width, height, fps, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (upload_id, meta["kind"], fmt, size, meta["frames"], meta["width"], meta["height"], meta["fps"],
                     time.time()),
                )  # fmt: skip
        finally:
            tmp.unlink(missing_ok=True)
        return self.get(upload_id)

    def add_path(self, path: str | os.PathLike, name: str | None = None) -> dict:
        """`add` for a file on this machine (the web app's, in Gradio's scratch folder)."""
        with open(path, "rb") as f:
            return self.add(f, name or Path(path).name)

    def get(self, upload_id: str) -> dict | None:
        """An upload's record as the API shows it (None if there is none)."""
        with self.lock:
            row = self.db.execute("SELECT * FROM uploads WHERE id=?", (upload_id,)).fetchone()
            jobs = self.db.execute(USED_BY.format(what="COUNT(*)", id="?"), (upload_id,)).fetchone()[0]
        if row is None:
            return None
        expires = row["created"] + self.limits.upload_ttl if not jobs and row["created"] else None
        return {
            "id": row["id"],
            "kind": row["kind"],
            "format": row["format"],
            "frames": row["frames"],
            "width": row["width"],
            "height": row["height"],
            "fps": row["fps"],
            "bytes": row["bytes"],
            "jobs": jobs,
            "created_at": _iso(row["created"]),
            "expires_at": _iso(expires),
            "url": f"/v1/uploads/{row['id']}/file",
        }

    def path(self, upload_id: str) -> Path | None:
        """The stored file of an upload, inside the uploads folder (None if there is none)."""
        with self.lock:
            row = self.db.execute("SELECT format FROM uploads WHERE id=?", (upload_id,)).fetchone()
        if row is None or row["format"] not in MEDIA_TYPES:
            return None
        path = (self.folder / f"{upload_id}.{row['format']}").resolve()
        return path if path.parent == self.folder.resolve() and path.is_file() else None

    def delete(self, upload_id: str) -> bool:
        """Remove an upload (False if there is none); a 409 while a queued or running job uses it."""
        with self.lock:
            busy = self.db.execute(
                USED_BY.format(what="id, status", id="?") + " AND status IN ('queued', 'running') LIMIT 1",
                (upload_id,),
            ).fetchone()
            if busy is not None:
                raise UploadError(
                    409, f"upload {upload_id} is the source of job {busy['id']}, which is {busy['status']}"
                )
            return self._remove(upload_id)

    def release(self, upload_id) -> None:
        """After a job is deleted (the caller holds `lock`): its upload goes too, unless another job uses it."""
        if isinstance(upload_id, str):
            if self.db.execute(USED_BY.format(what="COUNT(*)", id="?"), (upload_id,)).fetchone()[0] == 0:
                self._remove(upload_id)

    def sweep(self, now: float | None = None) -> int:
        """Remove the uploads no job has used for longer than the TTL; how many."""
        cutoff = (time.time() if now is None else now) - self.limits.upload_ttl
        with self.lock:
            stale = self.db.execute(
                "SELECT id FROM uploads WHERE created < ? AND NOT EXISTS "
                f"({USED_BY.format(what='1', id='uploads.id')})",
                (cutoff,),
            ).fetchall()
            for row in stale:
                self._remove(row["id"])
        return len(stale)

    def _remove(self, upload_id: str) -> bool:
        """Delete an upload's row and files (the caller holds `lock`)."""
        cur = self.db.execute("DELETE FROM uploads WHERE id=?", (upload_id,))
        try:
            uuid.UUID(upload_id)
        except ValueError:
            return cur.rowcount > 0  # (a file name is only ever made of an id that is a UUID)
        for path in self.folder.glob(f"{upload_id}.*"):
            path.unlink(missing_ok=True)
        return cur.rowcount > 0


def _iso(ts) -> str | None:
    if not isinstance(ts, (int, float)) or not 0 <= ts < 1e11:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"

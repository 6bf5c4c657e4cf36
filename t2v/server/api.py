"""The REST API (FastAPI, OpenAPI at /openapi.json) over the job queue, with the Gradio app mounted at /.

POST   /v1/jobs              {"prompt": ...} or {"storyboard": ...}  -> 202 {"id", "status": "queued", ...}
                             {"task": "image" | "zero-shot", "prompt": ...}: a picture, a zero-shot video
                             {"task": "edit" | "control", "source": <upload id>, "prompt": ...}: from a video
                             {"task": "tune", "source": <upload id>, "prompt": <its caption>}: a tuned model,
                             then {"prompt": ..., "tuned_model": <the tune job's id>}: a video from it
GET    /v1/jobs/{id}         status, progress, step, ETA, seed, error
GET    /v1/jobs/{id}/video   mp4 (?format=gif|webm, ?download=1)
GET    /v1/jobs/{id}/image   png of an image job (?download=1)
GET    /v1/jobs/{id}/control the control maps a control job followed (mp4, ?format=gif|webm, ?download=1)
POST   /v1/uploads           a source file (multipart, field "file") -> 201 {"id", "kind", "frames", ...}
GET    /v1/uploads/{id}      its record; /v1/uploads/{id}/file the file; DELETE /v1/uploads/{id}
DELETE /v1/jobs/{id}         cancel (a running job stops within one denoising step); ?purge=true deletes
GET    /v1/jobs              newest first, ?limit=&offset=&status=
GET    /healthz, /readyz
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from t2v.pipelines.long_video.storyboard import excerpt
from t2v.server.api_uploads import upload_routes
from t2v.server.jobs import FINISHED, STATUSES, JobError, JobQueue, QueueFull
from t2v.video_io import read_video, write_video


MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}
MAX_OFFSET = 10**9
MAX_MESSAGE_CHARS = 300  # one error message, as sent


class JobRequest(BaseModel):
    """A job: its task, and that task's parameters by their long names (`t2v generate`'s, or a storyboard;
    `t2v image`'s; `t2v zero`'s). A field another task takes is refused (422 naming it)."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["generate", "image", "zero-shot", "edit", "control", "tune"] | None = Field(
        None,
        description="generate (default): a video from the text-to-video model (or a tuned one: tuned_model); "
        "image: a picture, zero-shot: a video (Text2Video-Zero), both from the text-to-image model; edit: an "
        "uploaded video edited by an instruction (prompt); control: a video that follows the edges, depth or pose "
        "of an upload; tune: the text-to-image model tuned on an uploaded clip and its caption (prompt), "
        "Tune-A-Video.",
    )
    prompt: str | None = Field(
        None,
        description="What the video shows (tune: what the clip shows).",
        examples=["a red circle moving right on a black background"],
    )
    negative_prompt: str | None = None
    num_frames: int | None = Field(
        None, description="Frames (default: the model's; more are made in overlapping windows)."
    )
    height: int | None = Field(None, description="Pixels, a multiple of the VAE factor (default: the model's).")
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = Field(None, description="Drawn when not given (tune: 0); the job reports the seed used.")
    fps: float | None = Field(None, description="Frames per second of the file (default: the storyboard's, else 8).")
    scheduler: str | None = Field(
        None, description="dpm++, dpm++-karras, ddim, ddpm, pndm, euler, euler-a, heun, unipc, deis"
    )
    storyboard: str | dict | None = Field(
        None, description="Instead of a prompt: the content of a storyboard file (YAML or JSON)."
    )
    regions: bool | None = Field(
        None,
        description=(
            "A two-object prompt: each object's words heard only in its own half of the frame (default: the model's)."
        ),
    )
    motion_x: float | None = Field(None, description="zero-shot: motion in pixels per frame, + = right (|x| <= 64).")
    motion_y: float | None = Field(None, description="zero-shot: motion in pixels per frame, + = down (|y| <= 64).")
    zoom: float | None = Field(None, description="zero-shot: scale per frame, 0.5..2 (> 1 grows; default 1).")
    motion: str | None = Field(
        None, description="zero-shot: a named motion instead of motion_x / motion_y ('original': the paper's)."
    )
    t0: int | None = Field(None, description="zero-shot: the step index where the first frame is warped.")
    t1: int | None = Field(None, description="zero-shot: the step index the warped frames are re-noised to.")
    warp: str | None = Field(None, description="zero-shot: 'latent' (the original's) or 'pixel'.")
    chunk_size: int | None = Field(
        None, description="zero-shot, edit, control: frames made at once (>= 2; default: all)."
    )
    source: str | None = Field(None, description="edit, control, tune: the id of an upload (POST /v1/uploads).")
    image_guidance_scale: float | None = Field(
        None, description="edit: how close to stay to the source frames (default: the model's)."
    )
    shared_noise: bool | None = Field(None, description="edit: one start noise for all frames (default: the model's).")
    control: str | None = Field(None, description="control: what the video follows: edges, depth or pose.")
    conditioning_scale: float | None = Field(
        None, description="control: how strongly the control maps steer (0..100, default 1)."
    )
    as_map: bool | None = Field(None, description="control: the source already is a video of control maps.")
    pose_size: list[int] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="control, pose: [width, height], the pixels of the OpenPose JSON (default: the output's).",
    )
    steps: int | None = Field(None, description="tune: tuning steps (default 100; at most the server's).")
    lr: float | None = Field(None, description="tune: learning rate (default 0.001).")
    tuned_model: str | None = Field(
        None, description="generate: the id of a succeeded tune job: a video from the model it tuned."
    )
    invert: bool | None = Field(
        None,
        description="generate, with tuned_model: start from the tuned clip's DDIM inversion (default: true; its "
        "frames, size and steps) or from noise (false).",
    )


class SafeJSONResponse(JSONResponse):
    """JSON that any text survives: a lone surrogate is sent as its escape, never a 500."""

    def render(self, content) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def error_422(field: str, message: str) -> JSONResponse:
    loc = ["body", field] if field else ["body"]
    return SafeJSONResponse({"detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, status_code=422)


def _job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise HTTPException(404, f"no job {excerpt(job_id)}") from None


def _short(text) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _error_handlers(api: FastAPI) -> None:
    """Short, one-line errors: a bad request never gets its own input echoed back (FastAPI's default
    422 includes it), a full disk or a damaged database is a 503, not a 500."""

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        detail = [
            {
                "loc": [p if isinstance(p, int) else excerpt(p).strip("'") for p in e.get("loc", ())][:6],
                "msg": _short(e.get("msg", "invalid")),
                "type": _short(e.get("type", "value_error")),
            }
            for e in exc.errors()[:10]
        ]
        return SafeJSONResponse({"detail": detail}, status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return SafeJSONResponse({"detail": _short(exc.detail)}, exc.status_code, headers=exc.headers)

    @api.exception_handler(sqlite3.Error)
    @api.exception_handler(OSError)
    async def storage_error(_request: Request, exc: Exception):
        message = getattr(exc, "strerror", None) or str(exc)
        return SafeJSONResponse(
            {"detail": _short(f"the server cannot read or write its data right now: {message}")},
            503,
            headers={"Retry-After": "10"},
        )


def create_api(queue: JobQueue, token: str | None = None) -> FastAPI:
    """The FastAPI app: routes over `queue`, wrapped in the token and body-size guard."""
    api = FastAPI(
        title="t2v job server",
        version="1",
        description="Text-to-video jobs: submit, poll, download, cancel.",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: off (no docs offline, and no third-party
        redoc_url=None,  # scripts on this origin); /openapi.json stays
        default_response_class=SafeJSONResponse,
    )
    _error_handlers(api)
    _job_routes(api, queue)
    _file_and_health_routes(api, queue)
    upload_routes(api, queue)
    return api


def _job_routes(api: FastAPI, queue: JobQueue) -> None:
    """Submit, list, poll and cancel jobs."""

    @api.post(
        "/v1/jobs",
        status_code=202,
        responses={422: {"description": "A bad parameter"}, 429: {"description": "The queue is full"}},
    )
    def submit(job: JobRequest, response: Response):
        """Queue a job; poll `GET /v1/jobs/{id}` (or long-poll with `?wait=60`) for its progress."""
        if queue.pipe is None:
            raise HTTPException(503, "the model is not loaded yet", headers={"Retry-After": "5"})
        try:
            accepted = queue.submit(job.model_dump(), source="api")
            response.headers["Location"] = f"/v1/jobs/{accepted['id']}"
            return accepted
        except JobError as e:
            return error_422(e.field, str(e))
        except QueueFull as e:
            return JSONResponse({"detail": str(e)}, 429, headers={"Retry-After": str(e.retry_after)})

    @api.get("/v1/jobs")
    def list_jobs(
        limit: int = Query(20, ge=1, le=200),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        status: Literal[STATUSES] | None = Query(None),
    ):  # type: ignore[valid-type]
        """Jobs, newest first."""
        jobs, total = queue.list(limit, offset, status)
        return {
            "jobs": jobs,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None,
        }

    @api.get("/v1/jobs/{job_id}")
    async def get_job(
        job_id: str,
        wait: float = Query(0, ge=0, le=60, description="Wait up to this many seconds for the job to end."),
    ):
        """A job's status, progress (0..1), step, ETA, seed and error; with `wait`, a long poll."""
        job_id, deadline = _job_id(job_id), time.monotonic() + wait
        while True:
            seen = queue.changes
            job = await asyncio.to_thread(queue.get, job_id)
            if job is None:
                raise HTTPException(404, f"no job {job_id}")
            if job["status"] in FINISHED or time.monotonic() >= deadline or queue.stopping.is_set():
                return job
            while queue.changes == seen and time.monotonic() < deadline and not queue.stopping.is_set():
                await asyncio.sleep(0.02)  # no database reads until some job has ended

    @api.delete("/v1/jobs/{job_id}", responses={204: {"description": "Deleted (with ?purge=true)"}})
    def cancel_job(job_id: str, purge: bool = False):
        """Cancel a queued or running job (a running one stops within one denoising step); with
        `?purge=true`, delete any job: its record and its files."""
        if purge:
            if not queue.delete(_job_id(job_id)):
                raise HTTPException(404, f"no job {job_id}")
            return Response(status_code=204)
        job = queue.cancel(_job_id(job_id))
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        if job["status"] != "cancelled":
            raise HTTPException(409, f"job {job_id} has already {job['status']}")
        return job


def _existing_job(queue: JobQueue, job_id: str) -> dict:
    job = queue.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def _no_file(job: dict, what: str) -> HTTPException:
    return HTTPException(
        409, f"job {job['id']} is {job['status']}: it has no {what}" + (f" ({job['error']})" if job["error"] else "")
    )


def _video_file(path, job_id: str, format: str, download: bool, lock: threading.Lock, name: str = "") -> FileResponse:
    """A video file of a job as asked: mp4 as made; gif and webm converted on first request, then kept."""
    if format != "mp4":
        target = path.with_suffix(f".{format}")
        with lock:
            if not target.is_file():
                frames, fps = read_video(path)
                write_video(target, frames, fps=fps, overwrite=True)
        path = target
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[format],
        filename=f"t2v-{job_id}{name}.{format}",
        content_disposition_type="attachment" if download else "inline",
    )


def _file_and_health_routes(api: FastAPI, queue: JobQueue) -> None:
    """A job's video (converted on first request for gif and webm), control maps or picture, and the health
    checks."""
    convert_lock = threading.Lock()

    @api.get(
        "/v1/jobs/{job_id}/video",
        response_class=FileResponse,
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
    )
    def get_video(job_id: str, format: Literal["mp4", "gif", "webm"] = "mp4", download: bool = False):
        """The video of a succeeded job (mp4 as made; gif and webm converted once, then kept)."""
        job_id = _job_id(job_id)
        job = _existing_job(queue, job_id)
        if job["task"] == "image":
            raise HTTPException(
                409, f"job {job_id} is an image job: it has no video; its picture is at /v1/jobs/{job_id}/image"
            )
        if job["task"] == "tune":
            raise HTTPException(
                409, f"job {job_id} is a tune job: it has no video; generate jobs take its model as tuned_model"
            )
        path = queue.video_path(job_id)
        if path is None:
            raise _no_file(job, "video")
        return _video_file(path, job_id, format, download, convert_lock)

    @api.get(
        "/v1/jobs/{job_id}/control",
        response_class=FileResponse,
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
    )
    def get_control(job_id: str, format: Literal["mp4", "gif", "webm"] = "mp4", download: bool = False):
        """The control maps a succeeded control job followed (edges, depth or pose; mp4, or gif and webm)."""
        job_id = _job_id(job_id)
        job = _existing_job(queue, job_id)
        if job["task"] != "control":
            raise HTTPException(409, f"job {job_id} is a {job['task']} job: only control jobs have control maps")
        path = queue.control_path(job_id)
        if path is None:
            raise _no_file(job, "control maps")
        return _video_file(path, job_id, format, download, convert_lock, "-control")

    @api.get("/v1/jobs/{job_id}/image", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
    def get_image(job_id: str, download: bool = False):
        """The picture of a succeeded image job (png)."""
        job_id = _job_id(job_id)
        job = _existing_job(queue, job_id)
        if job["task"] != "image":
            raise HTTPException(
                409, f"job {job_id} is a {job['task']} job: it has no picture; its video is at /v1/jobs/{job_id}/video"
            )
        path = queue.image_path(job_id)
        if path is None:
            raise _no_file(job, "picture")
        return FileResponse(
            path,
            media_type="image/png",
            filename=f"t2v-{job_id}.png",
            content_disposition_type="attachment" if download else "inline",
        )

    @api.get("/healthz")
    async def healthz():  # on the event loop: answers while every worker thread is busy
        """The process answers."""
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz():
        """The model is loaded and the worker takes jobs (image_model_loaded: the text-to-image model of image,
        zero-shot and control jobs, loaded at start-up or on the first such job; edit_model_loaded: the same for
        the edit model; controls: the kinds of control job this server has a ControlNet for)."""
        body = {
            "ready": queue.ready,
            "model": queue.model or "t2v-shapes (embedded)",
            "image_model": queue.image_model or "t2v-shapes-image (embedded)",
            "image_model_loaded": queue.image_pipe is not None,
            "edit_model": queue.edit_model or "t2v-shapes-edit (embedded)",
            "edit_model_loaded": queue.edit_spec is not None,
            "controls": sorted(queue.controlnets),  # the control kinds this server runs
            "device": queue.device,
            "jobs": queue.counts(),
        }
        return JSONResponse(body, 200 if queue.ready else 503)

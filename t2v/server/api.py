"""The REST API (FastAPI, OpenAPI at /docs) over the job queue, with the Gradio app mounted at /.

POST   /v1/jobs              {"prompt": ...} or {"storyboard": ...}  -> 202 {"id", "status": "queued", ...}
GET    /v1/jobs/{id}         status, progress, step, ETA, seed, error
GET    /v1/jobs/{id}/video   mp4 (?format=gif|webm, ?download=1)
DELETE /v1/jobs/{id}         cancel (a running job stops within one denoising step)
GET    /v1/jobs              newest first, ?limit=&offset=&status=
GET    /healthz, /readyz
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from http.cookies import CookieError, SimpleCookie
from typing import Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from t2v.server.jobs import FINISHED, STATUSES, JobError, JobQueue, QueueFull
from t2v.video_io import read_video, write_video


TOKEN_COOKIE = "t2v_token"
MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}


class JobRequest(BaseModel):
    """A generation job: the parameters of `t2v generate` by their long names, or a storyboard."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(
        None, description="What the video shows.", examples=["a red circle moving right on a black background"]
    )
    negative_prompt: str | None = None
    num_frames: int | None = Field(
        None, description="Frames (default: the model's; more are made in overlapping windows)."
    )
    height: int | None = Field(None, description="Pixels, a multiple of the VAE factor (default: the model's).")
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = Field(None, description="Drawn when not given; the job reports the seed used.")
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


def error_422(field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]}, status_code=422)


def _job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise HTTPException(404, f"no job {job_id!r}") from None


class Guard:
    """ASGI middleware: the API token on every endpoint (when set) and the size of request bodies.

    The token is accepted as `Authorization: Bearer <token>`, as the `t2v_token` cookie, or once as
    `?token=<token>` in a page's address (which sets the cookie, so the web app and its video
    player work in a browser).
    """

    def __init__(self, app, token: str | None, max_body_bytes: int):
        self.app, self.token, self.max_body = app, token, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        set_cookie = False
        if self.token:
            given = [headers.get("authorization", "").removeprefix("Bearer ").strip()]
            try:
                cookie = SimpleCookie(headers.get("cookie", ""))
            except CookieError:
                cookie = {}
            given.append(cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else "")
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            given.append(query)
            ok = [bool(g) and secrets.compare_digest(g.encode(), self.token.encode()) for g in given]
            if not any(ok):
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                return await JSONResponse(
                    {"detail": "a valid API token is required (Authorization: Bearer <token>)"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )(scope, receive, send)
            set_cookie = ok[2] and not ok[1]
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            body, more = b"", True
            if int(headers.get("content-length", "0") or 0) > self.max_body:
                return await self._too_large(scope, receive, send)
            while more:  # small bodies only: read them whole, counting, then hand them on
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await self._too_large(scope, receive, send)
            sent, inner_receive = False, receive

            async def receive():  # noqa: F811 - replays the body read above, then waits for the disconnect
                nonlocal sent
                if sent:
                    return await inner_receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

        if set_cookie:
            inner_send = send

            async def send(message):  # noqa: F811 - adds the token cookie to the response
                if message["type"] == "http.response.start":
                    cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode("latin-1"))],
                    }
                await inner_send(message)

        await self.app(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"detail": f"the request body is larger than {self.max_body} bytes"}, 413)
        await response(scope, receive, send)


def create_api(queue: JobQueue, token: str | None = None) -> FastAPI:
    """The FastAPI app: routes over `queue`, wrapped in the token and body-size guard."""
    api = FastAPI(
        title="t2v job server", version="1", description="Text-to-video jobs: submit, poll, download, cancel."
    )
    _job_routes(api, queue)
    _file_and_health_routes(api, queue)
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
        offset: int = Query(0, ge=0),
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

    @api.delete("/v1/jobs/{job_id}")
    def cancel_job(job_id: str):
        """Cancel a queued or running job (a running one stops within one denoising step)."""
        job = queue.cancel(_job_id(job_id))
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        if job["status"] != "cancelled":
            raise HTTPException(409, f"job {job_id} has already {job['status']}")
        return job


def _file_and_health_routes(api: FastAPI, queue: JobQueue) -> None:
    """A job's video (converted on first request for gif and webm) and the health checks."""
    convert_lock = threading.Lock()

    @api.get(
        "/v1/jobs/{job_id}/video",
        response_class=FileResponse,
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
    )
    def get_video(job_id: str, format: Literal["mp4", "gif", "webm"] = "mp4", download: bool = False):
        """The video of a succeeded job (mp4 as made; gif and webm converted once, then kept)."""
        job_id = _job_id(job_id)
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        path = queue.video_path(job_id)
        if path is None:
            raise HTTPException(
                409,
                f"job {job_id} is {job['status']}: it has no video" + (f" ({job['error']})" if job["error"] else ""),
            )
        if format != "mp4":
            target = path.with_suffix(f".{format}")
            with convert_lock:
                if not target.is_file():
                    frames, fps = read_video(path)
                    write_video(target, frames, fps=fps, overwrite=True)
            path = target
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[format],
            filename=f"t2v-{job_id}.{format}",
            content_disposition_type="attachment" if download else "inline",
        )

    @api.get("/healthz")
    def healthz():
        """The process answers."""
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz():
        """The model is loaded and the worker takes jobs."""
        body = {
            "ready": queue.ready,
            "model": queue.model or "t2v-shapes (embedded)",
            "device": queue.device,
            "jobs": queue.counts(),
        }
        return JSONResponse(body, 200 if queue.ready else 503)

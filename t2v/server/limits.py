"""What one job may ask of this server: `Limits` and `check_params`, run before a job is accepted.

The request's own checks (`t2v.request.GenerateRequest`, the same as the CLI's) plus the server's
limits: frames, size, steps, prompt lengths (a storyboard's scenes and negative prompt too) and the
job's cost, frames x height x width x steps, so that no accepted job runs for days, and a running
one (which stops at the end of a denoising step) stops soon after it is cancelled. `t2v.server.tasks`
applies the same limits to picture, zero-shot, edit, control and tune jobs (and tune jobs' own steps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from t2v.pipelines.long_video.storyboard import excerpt
from t2v.request import GenerateRequest, RequestError


PARAM_FIELDS = (
    "prompt",
    "negative_prompt",
    "num_frames",
    "height",
    "width",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "fps",
    "scheduler",
    "storyboard",
    "regions",
    "invert",
)  # a generate job's parameters (invert: from a tuned model's inversion, t2v.server.tune_tasks)
# The default --max-cost, in megapixel-steps (frames x height x width x steps / 1e6), by device: on the
# project's 2-core CPU the embedded model makes about 0.7 of them a second (its default job, 16 frames of
# 64x64 in 25 steps, is 1.6), so 100 is about 2 to 3 minutes there.
DEFAULT_MAX_COST = {"cpu": 100.0, "mps": 1000.0, "cuda": 10_000.0}


def default_max_cost(device: str) -> float:
    return DEFAULT_MAX_COST.get(device.split(":")[0], DEFAULT_MAX_COST["cpu"])


@dataclass
class Limits:
    """What one request may ask for (the server's options --max-frames etc.)."""

    max_frames: int = 256
    max_size: int = 1024  # height and width, pixels
    max_steps: int = 1000
    max_prompt_chars: int = 1000
    max_queue: int = 100  # queued jobs; one more is answered 429
    max_body_bytes: int = 64 * 1024
    max_cost: float | None = None  # megapixel-steps; None: the device's default (`default_max_cost`)
    max_upload_bytes: int = 64 * 1024 * 1024  # one uploaded file (POST /v1/uploads, the web app's file fields)
    max_uploads: int = 100  # uploads kept that no job uses yet; one more is answered 429
    upload_ttl: float = 24 * 3600.0  # seconds an upload no job uses is kept
    max_tune_steps: int = 1000  # tuning steps of a tune job (t2v.server.tune_tasks)
    max_tuned_models: int = 10  # tuned models kept (queued, running and succeeded tune jobs); one more is a 422


class JobError(RequestError):
    """A bad parameter: `field` names it ("" for the request as a whole), the message says why (-> 422)."""


def job_cost(num_frames: int, height: int, width: int, steps: int) -> float:
    """A job's cost in megapixel-steps: what the denoising loop computes, frames x pixels x steps."""
    return num_frames * height * width * steps / 1e6


def check_params(body: dict, pipe, limits: Limits, device: str = "cpu") -> dict:
    """The parameters of a job, checked and completed (model defaults, a drawn seed) -> JSON-able dict.

    So that a job that is accepted does not fail on its parameters later. Raises JobError(field, reason).
    """
    given = {k: v for k, v in body.items() if v is not None}
    for name in ("prompt", "negative_prompt"):
        check_length(name, name, given.get(name), limits)
    try:
        req = GenerateRequest(**{k: given.get(k) for k in PARAM_FIELDS}).resolve(pipe)
    except RequestError as e:
        raise JobError(e.field, str(e)) from None
    board = req.storyboard
    if board is not None:
        for i, scene in enumerate(board.scenes, 1):
            check_length("storyboard", f"scene {i}: the prompt", scene.prompt, limits)
        check_length("storyboard", "the storyboard's negative_prompt", board.negative_prompt, limits)
        if board.num_frames > limits.max_frames:
            raise JobError(
                "storyboard",
                f"the storyboard has {board.num_frames} frames in all; at most {limits.max_frames} on this server",
            )
    check_top(req, limits, ("num_frames",))
    what = f"{req.num_frames} frames of {req.width}x{req.height}"
    check_cost(req.num_frames, req.height, req.width, req.num_inference_steps, limits, device, what)
    p = {k: getattr(req, k) for k in PARAM_FIELDS if getattr(req, k) is not None}
    if board is not None:
        p.pop("num_frames")
        p["storyboard"] = (
            given["storyboard"] if isinstance(given["storyboard"], str) else json.dumps(given["storyboard"])
        )
    return p


def check_length(field: str, name: str, text, limits: Limits) -> None:
    if isinstance(text, str) and len(text) > limits.max_prompt_chars:
        raise JobError(
            field,
            f"{name} is {len(text)} characters long; at most {limits.max_prompt_chars} on this server"
            if field == name
            else f"{name} is longer than {limits.max_prompt_chars} characters",
        )


def check_top(req, limits: Limits, frames: tuple[str, ...] = ()) -> None:
    """A resolved request's size and steps (and frames, for the `frames` fields) within the server's limits."""
    tops = {"num_frames": limits.max_frames, "height": limits.max_size, "width": limits.max_size}
    for name in (*frames, "height", "width", "num_inference_steps"):
        top = tops.get(name, limits.max_steps)
        if getattr(req, name) > top:
            raise JobError(name, f"{name} is {excerpt(getattr(req, name))}; at most {top} on this server")


def check_cost(frames: int, height: int, width: int, steps: int, limits: Limits, device: str, what: str) -> None:
    """The job's cost (`job_cost`) within the server's --max-cost; `what` it makes, in words, for the message."""
    cost, max_cost = job_cost(frames, height, width, steps), limits.max_cost or default_max_cost(device)
    if cost > max_cost:
        raise JobError(
            "",
            f"this job is {cost:.4g} megapixel-steps ({what} in {steps} steps); at most {max_cost:g} on this "
            "server: ask for fewer frames, pixels or steps",
        )

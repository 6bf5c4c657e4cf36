"""The kinds of job a server runs: its task, checked at submission and run by the worker.

    "generate"   (the default) `t2v generate`'s video, or a storyboard: t2v.request.GenerateRequest
    "image"      a picture from the text-to-image model: t2v.zero_shot.ImageRequest
    "zero-shot"  a video from the text-to-image model (Text2Video-Zero): t2v.zero_shot.ZeroShotRequest
    "edit"       an uploaded video edited by an instruction: t2v.video_jobs.EditRequest (t2v.server.video_tasks)
    "control"    a video that follows the edges, depth or pose of an upload: t2v.video_jobs.ControlRequest
    "tune"       the text-to-image model tuned on an uploaded clip (Tune-A-Video): t2v.tuning.TuneRequest
                 (t2v.server.tune_tasks); a generate job's `tuned_model` then names it

A job's task is kept in its params ("task"; a row without one, from an older server, is "generate").
Each task takes its own fields only: another task's field is a 422 naming it. The server's limits
apply to all: frames, size, steps, prompt lengths and the cost, frames x height x width x steps
(a picture is one frame).
"""

from __future__ import annotations

from pathlib import Path

from t2v.request import RequestError
from t2v.server.limits import PARAM_FIELDS, JobError, Limits, check_cost, check_length, check_params, check_top
from t2v.server.tune_tasks import TUNE_FIELDS, check_tune_job, run_tune_job, run_tuned_generate
from t2v.server.video_tasks import VIDEO_TASK_FIELDS, VIDEO_TASKS, check_video_job, run_video_job, video_steps


TASKS = ("generate", "image", "zero-shot", *VIDEO_TASKS, "tune")
IMAGE_FIELDS = (
    "prompt",
    "negative_prompt",
    "height",
    "width",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "scheduler",
)
ZERO_SHOT_FIELDS = (
    *IMAGE_FIELDS[:2],
    "num_frames",
    *IMAGE_FIELDS[2:],
    "fps",
    "motion_x",
    "motion_y",
    "zoom",
    "motion",
    "t0",
    "t1",
    "warp",
    "chunk_size",
)
TASK_FIELDS = {
    "generate": (*PARAM_FIELDS, "tuned_model"),
    "image": IMAGE_FIELDS,
    "zero-shot": ZERO_SHOT_FIELDS,
    **VIDEO_TASK_FIELDS,
    "tune": TUNE_FIELDS,
}
# the job's file: <data dir>/videos/<id><suffix> (a control job's maps: <id>.control.mp4 beside it; a tune
# job's model: the folder <data dir>/models/<id>/)
SUFFIXES = {"generate": ".mp4", "image": ".png", "zero-shot": ".mp4", "edit": ".mp4", "control": ".mp4"}
MAX_MESSAGE_CHARS = 300


def task_of(params: dict) -> str:
    """A stored job's task ("generate" for a row written before there were tasks)."""
    task = params.get("task", "generate")
    return task if isinstance(task, str) else "unknown"  # (a damaged row: fails when it runs)


def total_steps(params: dict) -> int:
    """The denoising steps a job's progress counts: its steps; for a zero-shot video, every step of the
    pipeline's loops (the first frame to t0, then each chunk of frames from t1), as its progress bar."""
    if task_of(params) == "tune":
        return params["steps"] if _count(params.get("steps")) else 0
    steps = params.get("num_inference_steps")
    if not _count(steps):
        return 0
    if task_of(params) in VIDEO_TASKS:
        return video_steps(params)
    if task_of(params) != "zero-shot":
        return steps
    t0, t1, frames, chunk = (params.get(k) for k in ("t0", "t1", "num_frames", "chunk_size"))
    if not (_count(t0, 0) and _count(t1) and _count(frames) and 0 <= t0 < t1 < steps):
        return steps
    per_chunk = chunk - 1 if _count(chunk, 2) else max(frames - 1, 1)
    chunks = len(range(0, max(frames - 1, 1), per_chunk))
    return (steps - t0 - 1) + chunks * (t1 + 1)


def _count(value, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_job(body: dict, pipe, image_pipe, limits: Limits, device: str, server=None) -> dict:
    """A job's parameters, checked and completed (the model's defaults, a drawn seed), with its task.

    `image_pipe()`: the text-to-image model (raising JobError on "task" when the server has none), called
    only for an image or zero-shot job whose own checks passed. `server`: what edit and control jobs need
    (the JobQueue: its uploads, edit model, ControlNets; see t2v.server.video_tasks). Raises
    JobError(field, reason)."""
    task = body.get("task") or "generate"
    if task not in TASKS:
        raise JobError("task", f"task must be one of {', '.join(TASKS)}, got {_short(repr(task))}")
    given = {k: v for k, v in body.items() if v is not None and k != "task"}
    for name in given:
        if name not in TASK_FIELDS[task]:
            raise JobError(
                name, f"{name} is not a parameter of {task} jobs; they take: {', '.join(TASK_FIELDS[task])}"
            )
    if task == "generate":
        return {"task": task, **_check_generate(given, pipe, limits, device, server)}
    for name in ("prompt", "negative_prompt"):
        check_length(name, name, given.get(name), limits)
    if task in VIDEO_TASKS:
        return check_video_job(task, given, limits, device, server)
    if task == "tune":
        return check_tune_job(given, limits, device, server)
    from t2v.zero_shot import ImageRequest, ZeroShotRequest

    kind = ImageRequest if task == "image" else ZeroShotRequest
    try:
        req = kind(**given).check()  # the model-free rules, before the model is looked for
        pipe = image_pipe()
        req = req.resolve(pipe)
    except RequestError as e:
        raise JobError(e.field, _short(str(e))) from None
    if task == "zero-shot" and req.scheduler is not None:
        _check_zero_shot_scheduler(req.scheduler, pipe.scheduler.config)
    frames = getattr(req, "num_frames", None) or 1
    check_top(req, limits, ("num_frames",) if task == "zero-shot" else ())
    what = (
        f"{frames} frames of {req.width}x{req.height}"
        if task == "zero-shot"
        else f"a {req.width}x{req.height} picture"
    )
    check_cost(frames, req.height, req.width, req.num_inference_steps, limits, device, what)
    return {"task": task, **{k: getattr(req, k) for k in TASK_FIELDS[task] if getattr(req, k) is not None}}


def _check_generate(given: dict, pipe, limits: Limits, device: str, server) -> dict:
    """A generate job's parameters: from the text-to-video model, or from a tuned model (`tuned_model`, the id of
    a succeeded tune job; `invert` stored as decided)."""
    model = given.pop("tuned_model", None)
    if model is None:
        params = check_params(given, pipe, limits, device)
        params.pop("invert", None)  # (false: the text-to-video model has no inversion)
        return params
    if server is None or getattr(server, "tuned_models", None) is None:
        raise JobError("tuned_model", "tuned models are the job server's")
    model_id = server.tuned_models.ready(model)
    return {**check_params(given, server.tuned_models.spec(model_id), limits, device), "tuned_model": model_id}


def _zero_shot_ready(name: str, config) -> bool:
    from t2v.pipelines.schedulers import make_scheduler

    scheduler = make_scheduler(name, config)
    return float(scheduler.init_noise_sigma) == 1.0 and getattr(scheduler, "order", 1) == 1


def _check_zero_shot_scheduler(name: str, config) -> None:
    """Text2Video-Zero re-noises frames with the DDPM forward process: its pipeline takes one-call-per-step
    schedulers with variance-preserving latents only (checked when it runs; here, before the job is queued)."""
    if not _zero_shot_ready(name, config):
        from t2v.pipelines.schedulers import SCHEDULERS

        ready = [n for n in SCHEDULERS if _zero_shot_ready(n, config)]
        raise JobError(
            "scheduler",
            f"zero-shot videos need a one-call-per-step scheduler with variance-preserving latents; {name} is not "
            f"one: choose one of {', '.join(ready)}",
        )


def _short(text: str) -> str:
    """The request classes quote a refused value whole; a reply must not grow with its request."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def run_job(params: dict, out: Path, queue, on_step) -> dict:
    """Run a stored job, writing `out`; returns its result (frames, size, fps, warnings; a tune job's model id)
    for the job row.
    `on_step(step, total)` is called after each denoising step (raising from it stops the job)."""
    task = task_of(params)
    options = {"output": out, "device": queue.device, "dtype": queue.dtype, "overwrite": True, "progress": False}
    if task == "generate":
        from t2v.generate import run_generate
        from t2v.request import GenerateRequest

        req = GenerateRequest(**{k: params.get(k) for k in PARAM_FIELDS}, model=queue.model, **options)
        if params.get("tuned_model") is not None:
            r = run_tuned_generate(req, params, queue, on_step)
        else:
            if req.scheduler is None and queue.pipe is not None:
                queue.pipe.scheduler = queue.base_scheduler  # a previous job may have swapped it
            r = run_generate(req, on_step=on_step)
    elif task in ("image", "zero-shot"):
        from t2v.zero_shot import ImageRequest, ZeroShotRequest, run_image, run_zero_shot

        fields = {k: params.get(k) for k in TASK_FIELDS[task]}
        if task == "image":
            r = run_image(ImageRequest(**fields, model=queue.image_model, **options), on_step=on_step)
        else:
            total, count = total_steps(params), 0

            def counted(_step, _total):  # the pipeline's step index goes back for each chunk of frames
                nonlocal count
                count += 1
                on_step(count, max(total, count))

            r = run_zero_shot(ZeroShotRequest(**fields, model=queue.image_model, **options), on_step=counted)
    elif task in VIDEO_TASKS:
        r = run_video_job(task, params, out, queue, on_step, options)
    elif task == "tune":
        return run_tune_job(params, out, queue, on_step)
    else:
        raise ValueError(f"this job's task {_short(repr(task))} is not one this server runs ({', '.join(TASKS)})")
    result = {"num_frames": r.num_frames, "height": r.height, "width": r.width, "fps": r.fps}
    if task == "image":
        result = {"height": r.height, "width": r.width}
    return {**result, **({"warnings": list(r.warnings)} if r.warnings else {})}

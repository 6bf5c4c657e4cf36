"""Edit and control jobs: videos made from an uploaded video (t2v.video_jobs), checked and run for the server.

    "edit"     the source edited by an instruction (`prompt`): t2v.video_jobs.EditRequest, with the server's
               Instruct-Pix2Pix model (t2v serve --edit-model; the embedded t2v-shapes-edit by default)
    "control"  a video that follows the edges, depth or pose (`control`) of the source: t2v.video_jobs.
               ControlRequest, with the server's text-to-image model and its ControlNet for that kind
               (t2v serve --controlnet KIND=DIR) and, for depth from a normal video, its --depth-model

A job's `source` is the id of an upload (POST /v1/uploads; a video, or OpenPose JSON for pose), never a
path; the ControlNet and the depth model are the server's, never the request's. The frames a job uses
(`num_frames`: all of the source's by default) are stored with its params, and the server's limits apply
as to the other tasks: frames, size, steps, prompt lengths and the cost, frames x height x width x steps.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from types import SimpleNamespace

from t2v.models.loading import embedded_controlnet
from t2v.pipelines.long_video.storyboard import excerpt
from t2v.request import RequestError
from t2v.server.limits import JobError, Limits, check_cost, check_top


VIDEO_TASKS = ("edit", "control")
CONTROL_KINDS = ("edges", "depth", "pose")  # (t2v.video_jobs.CONTROL_KINDS)
GENERATION_FIELDS = (
    "prompt",
    "negative_prompt",
    "num_frames",
    "height",
    "width",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "scheduler",
    "chunk_size",
    "fps",
)
EDIT_FIELDS = ("source", *GENERATION_FIELDS, "image_guidance_scale", "shared_noise")
CONTROL_FIELDS = ("control", "source", *GENERATION_FIELDS, "conditioning_scale", "as_map", "pose_size")
VIDEO_TASK_FIELDS = {"edit": EDIT_FIELDS, "control": CONTROL_FIELDS}
CONTROL_SUFFIX = ".control.mp4"  # the control maps of job <id>: <data dir>/videos/<id>.control.mp4
MAX_SOURCE_FRAMES = 4096  # frames taken from a source when num_frames is not given (t2v.video_jobs')
MAX_MESSAGE_CHARS = 300


def model_spec(pipe) -> SimpleNamespace:
    """What checking a request needs of a pipeline (its defaults and configs), without holding its weights:
    the pipeline itself stays in t2v.video_jobs' cache, which keeps one model at a time."""
    return SimpleNamespace(
        defaults=pipe.defaults,
        vae_scale_factor=pipe.vae_scale_factor,
        unet=SimpleNamespace(config=pipe.unet.config),
        scheduler=SimpleNamespace(config=pipe.scheduler.config),
    )


def video_steps(params: dict) -> int:
    """The denoising steps of an edit or control job: its steps for every chunk of frames (as its progress)."""
    steps, frames, chunk = (params.get(k) for k in ("num_inference_steps", "num_frames", "chunk_size"))
    if not (_count(steps) and _count(frames)):
        return steps if _count(steps) else 0
    from t2v.pipelines.control_video import chunks

    return steps * len(chunks(frames, chunk if _count(chunk, 2) else None))


def _count(value, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def controlnet_for(server, kind: str) -> str:
    """The ControlNet folder this server uses for `kind` (t2v serve --controlnet KIND=DIR; else, on the
    embedded text-to-image model, its own embedded ControlNet where one is installed), or a 422."""
    folder = (getattr(server, "controlnets", None) or {}).get(kind)
    if folder is None and getattr(server, "image_model", None) is None:
        folder = embedded_controlnet(kind)
    if folder is None:
        raise JobError(
            "control",
            f"this server has no {kind} ControlNet, so it runs no {kind} jobs (see t2v serve --controlnet {kind}=DIR)",
        )
    return str(folder)


def _upload(server, source) -> dict:
    """The upload a job names as its source, or a 422 on "source"."""
    if not isinstance(source, str) or not source.strip():
        raise JobError("source", f"source must be the id of an upload (POST /v1/uploads), got {excerpt(source)}")
    try:
        upload_id = str(uuid.UUID(source))
    except ValueError:
        upload_id = None
    upload = server.uploads.get(upload_id) if upload_id else None
    if upload is None:
        raise JobError("source", f"no upload {excerpt(source)}: upload the file with POST /v1/uploads first")
    return upload


def _source_kind(upload: dict, task: str, kind: str | None, as_map: bool) -> None:
    """A pose job's source is OpenPose JSON (unless as_map: a video of pose maps); any other job's a video."""
    wants = "pose" if task == "control" and kind == "pose" and not as_map else "video"
    if upload["kind"] == wants:
        return
    if wants == "pose":
        why = "pose jobs take OpenPose JSON (t2v does not find poses in a video), or a video of pose maps with as_map"
    else:
        why = f"{task} jobs take a video ({'OpenPose JSON is for pose jobs' if task == 'control' else 'not JSON'})"
    raise JobError("source", f"upload {upload['id']} is {upload['kind']} ({upload['format']}): {why}")


def _request(task: str, fields: dict, server):
    """The job's t2v.video_jobs request (its own rules checked) and the model that resolves it."""
    from t2v.video_jobs import ControlRequest, EditRequest

    if task == "edit":
        return EditRequest(**fields).check(), server.edit_pipeline
    kind = fields.pop("control", None)
    net, depth = controlnet_for(server, kind), None
    if kind == "depth" and not fields.get("as_map"):
        depth = getattr(server, "depth_model", None)
        if depth is None:
            raise JobError(
                "as_map",
                "depth from a normal video needs a depth-estimation model and this server has none (see t2v serve "
                "--depth-model): upload a video of depth maps and set as_map",
            )
    if isinstance(fields.get("pose_size"), list):
        fields["pose_size"] = tuple(fields["pose_size"])
    req = ControlRequest(**fields, kind=kind, controlnet=net, depth_model=depth).check()
    return req, server.image_pipeline


def check_video_job(task: str, given: dict, limits: Limits, device: str, server) -> dict:
    """An edit or control job's parameters, checked and completed (the model's defaults, the source's frames,
    a drawn seed), with its task. Raises JobError(field, reason)."""
    if server is None or getattr(server, "uploads", None) is None:
        raise JobError("task", f"{task} jobs need the job server's uploads")
    if task == "control" and given.get("control") not in CONTROL_KINDS:
        raise JobError(
            "control", f"control must be one of {', '.join(CONTROL_KINDS)}, got {excerpt(given.get('control'))}"
        )
    upload = _upload(server, given.get("source"))
    _source_kind(upload, task, given.get("control"), given.get("as_map") is True)
    fields = {**given, "source": upload["id"]}
    frames = fields.get("num_frames")
    if frames is not None and not _count(frames):
        raise JobError("num_frames", f"num_frames must be an integer >= 1, got {excerpt(frames)}")
    if fields.get("fps") is not None:
        from t2v.video_io import check_fps

        try:
            check_fps(fields["fps"])
        except ValueError as e:
            raise JobError("fps", _short(str(e))) from None
    try:
        req, model = _request(task, fields, server)
        req = req.resolve(model())
    except RequestError as e:
        raise JobError("control" if e.field == "kind" else e.field, _short(str(e))) from None
    count = upload["frames"]
    if frames is not None and frames > count:
        raise JobError("num_frames", f"num_frames is {frames} but the source has {count} frames")
    frames = frames or min(count, MAX_SOURCE_FRAMES)
    if frames > limits.max_frames:
        raise JobError(
            "num_frames",
            f"the job would use {frames} frames of the source; at most {limits.max_frames} on this server: ask for "
            "fewer with num_frames",
        )
    req = dataclasses.replace(req, num_frames=frames)
    check_top(req, limits, ("num_frames",))
    what = f"{frames} frames of {req.width}x{req.height}"
    check_cost(frames, req.height, req.width, req.num_inference_steps, limits, device, what)
    params = {"task": task, "source": upload["id"]}
    if task == "control":
        params["control"] = req.kind
    for name in VIDEO_TASK_FIELDS[task]:
        value = getattr(req, name, None)
        if name not in params and value is not None:
            params[name] = list(value) if isinstance(value, tuple) else value
    return params


def run_video_job(task: str, params: dict, out: Path, queue, on_step, options: dict):
    """Run a stored edit or control job, writing `out` (and, for control, its maps beside it)."""
    from t2v.video_jobs import ControlRequest, EditRequest, run_control, run_edit

    source = queue.uploads.path(params.get("source")) if isinstance(params.get("source"), str) else None
    if source is None:
        raise ValueError(f"the source of this job, upload {excerpt(params.get('source'))}, is gone")
    fields = {k: params[k] for k in VIDEO_TASK_FIELDS[task] if params.get(k) is not None}
    fields["source"] = source
    if task == "edit":
        return run_edit(EditRequest(**fields, model=queue.edit_model, **options), on_step=on_step)
    kind = fields.pop("control", None)
    depth = queue.depth_model if kind == "depth" and not fields.get("as_map") else None
    if isinstance(fields.get("pose_size"), list):
        fields["pose_size"] = tuple(fields["pose_size"])
    req = ControlRequest(
        **fields,
        kind=kind,
        controlnet=controlnet_for(queue, kind),
        depth_model=depth,
        save_control=out.with_name(out.stem + CONTROL_SUFFIX),
        model=queue.image_model,
        **options,
    )
    return run_control(req, on_step=on_step)

"""Tune jobs (Tune-A-Video, t2v.tuning) and generate jobs from the models they make, for the server.

    "tune"      one uploaded clip (`source`, an upload's id) and its caption (`prompt`) -> a video model: the
                server's text-to-image model (t2v serve --image-model) tuned on the clip, with the clip's DDIM
                inversion (t2v.tuning.TuneRequest, as `t2v tune`), kept in <data dir>/models/<job id>/
    "generate"  with `tuned_model` (the id of a succeeded tune job of this server): a video from that model,
                from its clip's inversion by default (`invert`, as `t2v generate --model DIR --invert/--no-invert`)

A tuned model is named by its tune job's id (the job's result: `"model": "<id>"`), never by a path; it goes
with its tune job (DELETE /v1/jobs/{id}?purge=true), and the videos made from it stay. A tune job's steps
(`--max-tune-steps`), frames, size and cost (frames x height x width x (tuning + inversion steps)) are bounded
by the server's limits, and at most `--max-tuned-models` are kept. Its progress counts tuning steps; the
queue's one worker runs one job at a time, so one tune at most. A tune the server stopped resumes from its
last checkpoint (every 50 steps, in the work folder <data dir>/models/.<job id>.tune).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

from t2v.pipelines.long_video.storyboard import excerpt
from t2v.request import RequestError
from t2v.server.limits import JobError, Limits, check_cost
from t2v.server.video_tasks import _upload


TUNE_FIELDS = ("source", "prompt", "num_frames", "steps", "lr", "seed", "height", "width")
OPTIONS = TUNE_FIELDS[2:]  # TuneRequest's own names
WORK_SUFFIX = ".tune"  # (t2v.tuning.WORK_SUFFIX) the work folder of job <id>: models/.<id>.tune
KEPT = ("queued", "running", "succeeded")  # the tune jobs whose model (or work folder) is kept
TUNE_JOBS = (
    "SELECT id, status FROM jobs WHERE (CASE WHEN json_valid(params) THEN json_extract(params, '$.task') END) = 'tune'"
)
MAX_MESSAGE_CHARS = 300


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _uuid(value) -> str | None:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


class TunedModels:
    """The tuned models of one data directory (<data dir>/models/), named by their tune jobs' ids, and the one
    loaded for generating (the worker's; one at a time). `db` and `lock`: the job database and its lock."""

    def __init__(self, data_dir: Path, db, lock):
        self.folder, self.db, self.lock = Path(data_dir) / "models", db, lock
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create {self.folder}: {e.strerror}") from None
        self.loaded: tuple[str, object] | None = None  # (model id, pipeline)

    def path(self, model_id: str) -> Path:
        """The folder of the model of tune job `model_id` (a UUID: a name made by the server)."""
        return self.folder / str(uuid.UUID(model_id))

    def remove(self, model_id) -> None:
        """Delete a model and its work folder, if any (any id that is not a UUID names none)."""
        model_id = _uuid(model_id)
        if model_id is None:
            return
        if self.loaded is not None and self.loaded[0] == model_id:
            self.loaded = None
        for path in (self.folder / model_id, self.folder / f".{model_id}{WORK_SUFFIX}"):
            shutil.rmtree(path, ignore_errors=True)

    def sweep(self) -> None:
        """At start-up: remove what no queued, running or succeeded tune job owns (a crash between a job's
        deletion and its folder's, a tune that failed while the server stopped)."""
        with self.lock:
            keep = {row[0] for row in self.db.execute(TUNE_JOBS) if row[1] in KEPT}
        for path in self.folder.iterdir():
            name = path.name.removeprefix(".").removesuffix(WORK_SUFFIX)
            if name not in keep:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def count(self) -> int:
        """Tuned models kept or being made: queued, running and succeeded tune jobs."""
        with self.lock:
            return sum(row[1] in KEPT for row in self.db.execute(TUNE_JOBS))

    def ready(self, value) -> str:
        """The id of a succeeded tune job whose model is there, or a 422 on "tuned_model" saying why not."""
        model_id = _uuid(value)
        if model_id is None and not isinstance(value, str):
            raise JobError("tuned_model", f"tuned_model must be the id of a tune job, got {excerpt(value)}")
        with self.lock:
            row = self.db.execute("SELECT status, params FROM jobs WHERE id=?", (model_id,)).fetchone()
        try:
            task = json.loads(row["params"]).get("task") if row is not None else None
        except (TypeError, ValueError, AttributeError):
            task = None
        if task != "tune":
            raise JobError(
                "tuned_model", f'no tune job {excerpt(value)}: tune a model first (a job with "task": "tune")'
            )
        if row["status"] in ("queued", "running"):
            raise JobError(
                "tuned_model", f"tune job {model_id} is {row['status']}: its model is not ready yet (wait for it)"
            )
        if row["status"] != "succeeded":
            raise JobError("tuned_model", f"tune job {model_id} {row['status']}: it made no model")
        if not (self.path(model_id) / "model_index.json").is_file():
            raise JobError("tuned_model", f"the model of tune job {model_id} is gone")
        return model_id

    def spec(self, model_id: str) -> SimpleNamespace:
        """What checking a generate request needs of a tuned model (its defaults, sizes and inversion), read from
        its folder without loading its weights."""
        from t2v.models.defaults import ModelDefaults
        from t2v.models.loading import prepare_model_dir
        from t2v.pipelines.inversion import INVERSION_ATTRIBUTE, Inversion, load_inversion

        path = self.path(model_id)
        try:
            info = prepare_model_dir(path)
            unet_config = json.loads((path / "unet" / "config.json").read_text())
            factor = 2 ** (len(json.loads((path / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
            defaults = ModelDefaults.read(info)
            latents, steps = load_inversion(path), (info.meta.get("inversion") or {}).get("num_inference_steps")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise JobError("tuned_model", _short(f"the model of tune job {model_id} cannot be read: {e}")) from None
        unet = SimpleNamespace(config=SimpleNamespace(**unet_config))
        setattr(unet, INVERSION_ATTRIBUTE, Inversion(latents, int(steps)) if latents is not None and steps else None)
        size = (unet_config.get("sample_size") or 32) * factor  # (TextToVideoPipeline.default_size)
        return SimpleNamespace(defaults=defaults, vae_scale_factor=factor, default_size=size, unet=unet)

    def pipeline(self, model_id, device: str, dtype: str | None):
        """The tuned model's pipeline with its sparse-causal attention and inversion (loaded once; one at a time),
        or a ValueError when its tune job was deleted."""
        from t2v.models.loading import prepare_model_dir
        from t2v.pipelines.inversion import prepare_tuned
        from t2v.pipelines.text_to_video import load_pipeline

        model_id = _uuid(model_id)
        path = self.path(model_id) if model_id is not None else None
        if path is None or not (path / "model_index.json").is_file():
            raise ValueError(f"the tuned model {excerpt(model_id)} is gone (its tune job was deleted)")
        if self.loaded is None or self.loaded[0] != model_id:
            self.loaded = None  # (the previous one freed first)
            pipe = load_pipeline(path, device=device, dtype=dtype)
            prepare_tuned(pipe, prepare_model_dir(path))
            pipe.set_progress_bar_config(disable=True)
            self.loaded = (model_id, pipe)
        return path, self.loaded[1]


def check_tune_job(given: dict, limits: Limits, device: str, server) -> dict:
    """A tune job's parameters, checked and completed (the clip's frames, the model's size, the default steps and
    learning rate), with its task. Raises JobError(field, reason)."""
    from t2v.tuning import INVERSION_STEPS, TuneRequest

    if server is None or getattr(server, "tuned_models", None) is None:
        raise JobError("task", "tune jobs need the job server's uploads and model folder")
    upload = _upload(server, given.get("source"))
    if upload["kind"] != "video":
        raise JobError(
            "source", f"upload {upload['id']} is {upload['kind']} ({upload['format']}): tune jobs take a video"
        )
    options = {k: given[k] for k in OPTIONS if k in given}
    try:
        req = TuneRequest(f"upload {upload['id']}", given.get("prompt"), server.tuned_models.folder, **options).check()
        req = req.resolve(server.image_pipeline(), upload["frames"])
    except RequestError as e:
        field, message = ("prompt", str(e).replace("caption", "prompt", 1)) if e.field == "caption" else (e.field, e)
        raise JobError(field, _short(message)) from None
    if req.steps > limits.max_tune_steps:
        raise JobError("steps", f"steps is {req.steps}; at most {limits.max_tune_steps} tuning steps on this server")
    for name, top in (("num_frames", limits.max_frames), ("height", limits.max_size), ("width", limits.max_size)):
        if getattr(req, name) > top:
            raise JobError(name, f"{name} is {getattr(req, name)}; at most {top} on this server")
    what = f"tuning on and inverting {req.num_frames} frames of {req.width}x{req.height}"
    check_cost(req.num_frames, req.height, req.width, req.steps + INVERSION_STEPS, limits, device, what)
    kept = server.tuned_models.count()
    if kept >= limits.max_tuned_models:
        raise JobError(
            "task",
            f"this server keeps at most {limits.max_tuned_models} tuned models and has {kept}: delete tune jobs "
            "(DELETE /v1/jobs/{id}?purge=true) first",
        )
    params = {"task": "tune", "source": upload["id"], "prompt": req.caption}
    return {**params, **{k: getattr(req, k) for k in OPTIONS}}


def run_tune_job(params: dict, out: Path, queue, on_step) -> dict:
    """Run a stored tune job, writing the model folder `out`; its result: the model's id, frames, size, steps."""
    from t2v.tuning import TuneRequest, run_tune

    source = queue.uploads.path(params.get("source")) if isinstance(params.get("source"), str) else None
    if source is None:
        raise ValueError(f"the source of this job, upload {excerpt(params.get('source'))}, is gone")
    options = {k: params.get(k) for k in OPTIONS}
    req = TuneRequest(source, params.get("prompt"), out, queue.image_model, **options, device=queue.device,
                      dtype=queue.dtype, overwrite=True, progress=False)  # fmt: skip
    r = run_tune(req, on_step=on_step)
    result = {"model": out.name, "num_frames": r.num_frames, "height": r.height, "width": r.width, "steps": r.steps}
    return {**result, **({"resumed_at_step": r.resumed_step} if r.resumed_step else {})}


def run_tuned_generate(req, params: dict, queue, on_step):
    """Run a stored generate job from a tuned model (`params["tuned_model"]`): `req`, its GenerateRequest."""
    import dataclasses

    from t2v.generate import run_generate

    path, pipe = queue.tuned_models.pipeline(params.get("tuned_model"), queue.device, queue.dtype)
    return run_generate(dataclasses.replace(req, model=str(path)), on_step=on_step, pipe=pipe)

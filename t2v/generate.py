"""Prompt in, video file out: the job behind `t2v generate`, `t2v story` and the job server.

Order matters for the user: everything that can be checked cheaply (the request's own rules, the
output path, device, dtype) is checked before the model loads, and nothing is written until the
frames exist.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from t2v.models.defaults import PromptWarning
from t2v.models.loading import parse_dtype, pick_device, prepare_model_dir
from t2v.pipelines.inversion import ddim_schedulers, inversion_of, prepare_tuned
from t2v.pipelines.long_video.pipeline import LongVideoPipeline
from t2v.pipelines.text_to_video import load_pipeline, to_uint8
from t2v.request import GenerateRequest, RequestError
from t2v.video_io import check_output_path, write_video


@dataclass
class GenerateResult:
    path: Path
    seed: int
    num_frames: int
    height: int
    width: int
    fps: float
    warnings: tuple[str, ...] = ()  # what the model could not draw (PromptWarning), for the user


_cache: dict[tuple, object] = {}


def get_pipeline(model: str | None, device: str, dtype: str | None):
    """Load once per (model, device, dtype) per process. A tuned model (t2v tune) comes with its
    sparse-causal attention on and its inversion (t2v.pipelines.inversion.prepare_tuned)."""
    key = (model, device, dtype)
    if key not in _cache:
        _cache.clear()  # one model in memory at a time
        pipe = load_pipeline(model, device=device, dtype=dtype)
        if model is not None:  # (the embedded model is not a tuned one)
            prepare_tuned(pipe, prepare_model_dir(model))
        _cache[key] = pipe
    return _cache[key]


def run_generate(req: GenerateRequest, on_step: Callable[[int, int], None] | None = None, pipe=None) -> GenerateResult:
    """`pipe`: the pipeline of `req.model`, already loaded (the job server's tuned models); None: `get_pipeline`'s."""
    # 1. Cheap checks first: nothing is loaded or generated for a request that cannot be written
    req = req.check()
    if req.output is None:
        raise RequestError("output", "an output path is required")
    path = check_output_path(req.output, overwrite=req.overwrite)
    device = pick_device(req.device)
    parse_dtype(req.dtype, device)

    # 2. The model; its recommended settings for anything not given
    pipe = get_pipeline(req.model, device, req.dtype) if pipe is None else pipe
    req = req.resolve(pipe)
    pipe.set_progress_bar_config(disable=not req.progress)
    callback = None
    if on_step:  # diffusers' step-end hook; raising from on_step stops the generation

        def callback(pipeline, i, _t, _tensors):
            on_step(i + 1, pipeline.num_timesteps)
            return {}

    # 3. Generate (in windows or keyframes past the model's length, or scene by scene), then write atomically
    model_scheduler = pipe.scheduler  # the cached pipeline goes back to the model's own solver afterwards
    if req.invert:  # a tuned model's inversion: the DDIM sampler it pairs with
        pipe.scheduler = ddim_schedulers(model_scheduler.config)[0]
    elif req.scheduler:
        pipe.set_scheduler(req.scheduler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PromptWarning)
            frames = _generate(pipe, req, callback)
    finally:
        pipe.scheduler = model_scheduler
    write_video(path, to_uint8(frames), fps=req.fps, overwrite=req.overwrite)
    said = tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PromptWarning)))
    return GenerateResult(path, req.seed, len(frames), req.height, req.width, req.fps, said)


def _generate(pipe, req: GenerateRequest, callback):
    """Frames [F, H, W, 3] in [0, 1] of a resolved request: one pass, or a long video / storyboard."""
    kwargs = {
        "negative_prompt": req.negative_prompt,
        "num_frames": req.num_frames,
        "height": req.height,
        "width": req.width,
        "num_inference_steps": req.num_inference_steps,
        "guidance_scale": req.guidance_scale,
        "seed": req.seed,
        "callback_on_step_end": callback,
    }
    if req.invert:
        kwargs["latents"] = inversion_of(pipe).latents
    if req.regions:
        kwargs["regions"] = pipe.defaults.region_planner.plan_regions(
            req.prompt, req.num_frames, req.height, req.width
        )
    if req.storyboard is None and req.num_frames <= pipe.defaults.num_frames:
        return pipe(req.prompt, **kwargs).frames[0]
    long = LongVideoPipeline(**pipe.components)
    long.set_progress_bar_config(disable=not req.progress)
    if req.storyboard is None:
        return long(req.prompt, scene_motion=req.scene_motion, **kwargs).frames[0]
    board = req.storyboard
    kwargs.update(
        num_frames=None, negative_prompt=board.negative_prompt if req.negative_prompt is None else req.negative_prompt
    )
    return long(
        scenes=list(board.scenes), transition_frames=board.transition_frames, scene_motion=req.scene_motion, **kwargs
    ).frames[0]

"""Prompt in, picture or zero-shot video out: the jobs behind `t2v image`, `t2v zero` and their server tasks.

As for `t2v generate` (t2v.generate, t2v.request): the request's own rules are checked before anything
loads, the model's recommended settings (`ImageModelDefaults`) fill what is not given, and nothing is
written until the picture or frames exist. Both run on a text-to-image model in the Stable Diffusion
layout: the embedded t2v-shapes-image model by default, or any SD 1.x/2.x folder or Hub id.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from t2v.image_io import check_image_path, write_image
from t2v.models.defaults import WARPS, ImageModelDefaults, PromptWarning
from t2v.models.loading import parse_dtype, pick_device, quiet
from t2v.pipelines.long_video.storyboard import excerpt
from t2v.pipelines.schedulers import SCHEDULERS, make_scheduler
from t2v.pipelines.text_to_image import TextToImagePipeline
from t2v.pipelines.text_to_video import to_uint8
from t2v.request import DEFAULT_FPS, MAX_STEPS, RequestError, check_numbers, check_size, check_texts, draw_seed
from t2v.video_io import check_output_path, write_video


MAX_MOTION = 64.0  # pixels per frame
MAX_ZOOM = 2.0  # scale per frame (and 1 / MAX_ZOOM)


@dataclass(frozen=True)
class ImageRequest:
    """A picture from a prompt. None means: the model's default."""

    prompt: str | None = None
    output: Path | None = None
    model: str | None = None
    height: int | None = None
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    scheduler: str | None = None
    device: str = "auto"
    dtype: str | None = None
    overwrite: bool = False
    progress: bool = True

    def check(self):
        check_texts(self)
        check_numbers(self)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise RequestError(
                "scheduler", f"unknown scheduler {excerpt(self.scheduler)}; choose one of: {', '.join(SCHEDULERS)}"
            )
        return self

    def resolve(self, pipe):
        req, d = self.check(), pipe.defaults
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        req = dataclasses.replace(
            req,
            height=size if req.height is None else req.height,
            width=size if req.width is None else req.width,
            num_inference_steps=req.num_inference_steps or d.num_inference_steps,
            guidance_scale=float(d.guidance_scale if req.guidance_scale is None else req.guidance_scale),
            seed=draw_seed() if req.seed is None else req.seed,
        )
        check_size(req, math.lcm(8, pipe.vae_scale_factor))  # (diffusers' SD pipeline asks for multiples of 8)
        check_steps(pipe.scheduler.config, req.num_inference_steps)
        return req


@dataclass(frozen=True)
class ZeroShotRequest(ImageRequest):
    """A zero-shot video (Text2Video-Zero) from a prompt: the picture model's frames moved by a global
    motion field. motion_x / motion_y: output pixels per frame (+ = right / down); zoom: scale per frame;
    motion: a preset of MOTION_PRESETS instead ("original": the paper's default field)."""

    num_frames: int | None = None
    motion_x: float | None = None
    motion_y: float | None = None
    zoom: float | None = None
    motion: str | None = None
    t0: int | None = None
    t1: int | None = None
    warp: str | None = None
    chunk_size: int | None = None
    fps: float | None = None

    def check(self):
        super().check()
        for name, top in (("motion_x", MAX_MOTION), ("motion_y", MAX_MOTION)):
            value = getattr(self, name)
            if value is not None and (not _number(value) or abs(value) > top):
                raise RequestError(
                    name, f"{name} must be a number of pixels per frame in [-{top:g}, {top:g}], got {excerpt(value)}"
                )
        if self.zoom is not None and (not _number(self.zoom) or not 1 / MAX_ZOOM <= self.zoom <= MAX_ZOOM):
            raise RequestError(
                "zoom", f"zoom must be a scale per frame in [{1 / MAX_ZOOM:g}, {MAX_ZOOM:g}], got {excerpt(self.zoom)}"
            )
        if self.motion is not None:
            from t2v.pipelines.text_to_video_zero import MOTION_PRESETS

            if self.motion not in MOTION_PRESETS:
                raise RequestError(
                    "motion", f"unknown motion {excerpt(self.motion)}; choose one of: {', '.join(MOTION_PRESETS)}"
                )
            if self.motion_x is not None or self.motion_y is not None:
                raise RequestError("motion", "give either a motion preset or motion_x / motion_y, not both")
        if self.warp is not None and self.warp not in WARPS:
            raise RequestError("warp", f"warp must be one of {', '.join(WARPS)}, got {excerpt(self.warp)}")
        for name in ("t0", "t1", "chunk_size"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_STEPS
            ):
                raise RequestError(name, f"{name} must be an integer in [0, {MAX_STEPS}], got {excerpt(value)}")
        if self.chunk_size is not None and self.chunk_size < 2:
            raise RequestError(
                "chunk_size", f"chunk_size must be at least 2 (the anchor frame and one more), got {self.chunk_size}"
            )
        return self

    def resolve(self, pipe):
        req, d = super().resolve(pipe), pipe.defaults
        steps = self.num_inference_steps or d.zero_shot_steps
        check_steps(pipe.scheduler.config, steps)
        if req.scheduler is not None:  # the method re-noises latents: one call a step, variance-preserving
            scheduler = make_scheduler(req.scheduler, pipe.scheduler.config)
            if float(scheduler.init_noise_sigma) != 1.0 or getattr(scheduler, "order", 1) != 1:
                raise RequestError(
                    "scheduler",
                    f"zero-shot video needs a scheduler with one model call per step and variance-preserving "
                    f"latents (ddim, ddpm, dpm++, unipc, ...); {req.scheduler} is not one",
                )
        t0, t1 = zero_shot_steps(d, steps, self.t0, self.t1)
        given = req.motion or req.motion_x is not None or req.motion_y is not None
        motion = {} if given else {"motion": "original"}  # Text2Video-Zero's own default field
        return dataclasses.replace(
            req,
            num_frames=req.num_frames or d.video_length,
            num_inference_steps=steps,
            t0=t0,
            t1=t1,
            warp=req.warp or d.warp,
            zoom=1.0 if req.zoom is None else float(req.zoom),
            fps=DEFAULT_FPS if req.fps is None else float(req.fps),
            **motion,
        )


def check_steps(config, steps: int) -> None:
    """At most the steps the model's schedule has (past them diffusers' schedulers index out of range)."""
    top = config.num_train_timesteps - getattr(config, "steps_offset", 0)
    if steps > top:
        raise RequestError(
            "num_inference_steps", f"num_inference_steps must be at most {top} for this model, got {steps}"
        )


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def zero_shot_steps(d: ImageModelDefaults, steps: int, t0: int | None, t1: int | None) -> tuple[int, int]:
    """t0 and t1 as step indices for `steps` denoising steps: as given, else the model's scaled from its
    zero_shot_steps (44 and 47 of 50 become 22 and 23 of 25)."""
    if t0 is None:
        t0 = min(steps - 2, round(d.t0 * steps / d.zero_shot_steps)) if t1 is None else t1 - 1
    if t1 is None:
        t1 = max(t0 + 1, min(steps - 1, round(d.t1 * steps / d.zero_shot_steps)))
    if not 0 <= t0 < t1 < steps:
        raise RequestError("t0", f"need 0 <= t0 < t1 < steps, got t0={t0}, t1={t1}, steps={steps}")
    return t0, t1


_cache: dict[tuple, object] = {}


def get_image_pipeline(model: str | None, device: str, dtype: str | None) -> TextToImagePipeline:
    """Load once per (model, device, dtype) per process; one model in memory at a time."""
    key = (model, device, dtype)
    if key not in _cache:
        _cache.clear()
        with quiet():
            pipe = TextToImagePipeline.from_pretrained(model, dtype=parse_dtype(dtype, device))
        _cache[key] = pipe.to(device)
    return _cache[key]


def _prepare(req, output_check, on_step):
    req = req.check()
    if req.output is None:
        raise RequestError("output", "an output path is required")
    path = output_check(req.output, overwrite=req.overwrite)
    device = pick_device(req.device)
    parse_dtype(req.dtype, device)
    pipe = get_image_pipeline(req.model, device, req.dtype)
    req = req.resolve(pipe)
    pipe.set_progress_bar_config(disable=not req.progress)
    callback = None
    if on_step:  # diffusers' step-end hook; raising from on_step stops the work
        # (a zero-shot video runs steps t1 .. t0 twice: for the first frame, then for all frames)
        total, done = req.num_inference_steps + (getattr(req, "t1", 0) or 0) - (getattr(req, "t0", 0) or 0), [0]

        def callback(_pipeline, _i, _t, _tensors):
            done[0] += 1
            on_step(min(done[0], total), total)
            return {}

    return req, path, pipe, callback


def _said(caught) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PromptWarning)))


@dataclass
class ImageResult:
    path: Path
    seed: int
    height: int
    width: int
    warnings: tuple[str, ...] = ()
    num_frames: int = 1
    fps: float | None = None


def run_image(req: ImageRequest, on_step: Callable[[int, int], None] | None = None) -> ImageResult:
    req, path, pipe, callback = _prepare(req, check_image_path, on_step)
    scheduler = pipe.scheduler
    if req.scheduler:
        pipe.scheduler = make_scheduler(req.scheduler, scheduler.config)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PromptWarning)
            image = pipe(
                req.prompt,
                req.height,
                req.width,
                req.num_inference_steps,
                guidance_scale=req.guidance_scale,
                negative_prompt=req.negative_prompt,
                seed=req.seed,
                output_type="np",
                callback_on_step_end=callback,
            ).images[0]
    finally:
        pipe.scheduler = scheduler
    write_image(path, image, overwrite=req.overwrite)
    return ImageResult(path, req.seed, req.height, req.width, _said(caught))


def zero_shot_frames(pipe, req: ZeroShotRequest, callback=None) -> np.ndarray:
    """Frames [F, H, W, 3] in [0, 1] of a resolved zero-shot request, from a text-to-image pipeline's parts."""
    from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline

    zero = TextToVideoZeroPipeline(**pipe.components)
    zero.set_progress_bar_config(disable=not req.progress)
    zero.scheduler = make_scheduler(req.scheduler or "ddim", pipe.scheduler.config)  # the method's DDIM by default
    motion = (
        {"motion": req.motion} if req.motion else {"motion_x": req.motion_x or 0.0, "motion_y": req.motion_y or 0.0}
    )
    out = zero(
        req.prompt,
        video_length=req.num_frames,
        height=req.height,
        width=req.width,
        num_inference_steps=req.num_inference_steps,
        guidance_scale=req.guidance_scale,
        negative_prompt=req.negative_prompt,
        t0=req.t0,
        t1=req.t1,
        zoom=req.zoom,
        warp=req.warp,
        chunk_size=req.chunk_size,
        seed=req.seed,
        output_type="np",
        callback_on_step_end=callback,
        **motion,
    )
    return np.asarray(out.images)


def run_zero_shot(req: ZeroShotRequest, on_step: Callable[[int, int], None] | None = None) -> ImageResult:
    req, path, pipe, callback = _prepare(req, check_output_path, on_step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptWarning)
        pipe.defaults.warn_about(req.prompt)
        frames = zero_shot_frames(pipe, req, callback)
    write_video(path, to_uint8(frames), fps=req.fps, overwrite=req.overwrite)
    return ImageResult(path, req.seed, req.height, req.width, _said(caught), len(frames), req.fps)

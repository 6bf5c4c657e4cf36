"""Prompt in, video file out: the job behind `t2v generate` (and the job server).

Order matters for the user: everything that can be checked cheaply (output path, scheduler name,
device, dtype) is checked before the model loads, and nothing is written until the frames exist.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from t2v.models.loading import load_pipeline, parse_dtype, pick_device
from t2v.pipelines.long_video import SCENE_MOTIONS, one_pass
from t2v.pipelines.schedulers import SCHEDULERS
from t2v.pipelines.text_to_video import to_uint8
from t2v.video_io import check_output_path, write_video
from t2v.world.layout import has_layout, shapes_regions


@dataclass
class GenerateRequest:
    prompt: str | None
    output: Path
    storyboard: object | None = None  # a t2v.pipelines.long_video.Storyboard instead of a prompt
    model: str | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    scheduler: str | None = None
    fps: float = 8.0
    device: str = "auto"
    dtype: str | None = None
    overwrite: bool = False
    progress: bool = True
    regions: bool | None = None  # two-object Shapes prompts, one band per object (t2v.world.layout); None: the model's default
    scene_motion: str | None = None  # scenes past the model's length: "keyframes" or "windows" (LongVideoPipeline); None: the model's


@dataclass
class GenerateResult:
    path: Path
    seed: int
    num_frames: int
    height: int
    width: int
    fps: float


_cache: dict[tuple, object] = {}


def get_pipeline(model: str | None, device: str, dtype: str | None):
    """Load once per (model, device, dtype) per process."""
    key = (model, device, dtype)
    if key not in _cache:
        _cache.clear()  # one model in memory at a time
        _cache[key] = load_pipeline(model, device=device, dtype=dtype)
    return _cache[key]


def _given(value, default):
    return default if value is None else value


def draw_seed() -> int:
    return secrets.randbelow(2**31)


def run_generate(req: GenerateRequest, on_step: Callable[[int, int], None] | None = None) -> GenerateResult:
    # 1. Cheap checks first: nothing is loaded or generated for a request that cannot be written
    path = check_output_path(req.output, overwrite=req.overwrite)
    if req.scheduler is not None and req.scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {req.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}")
    if not (isinstance(req.fps, (int, float)) and math.isfinite(req.fps) and req.fps > 0):
        raise ValueError(f"fps must be a positive number, got {req.fps!r}")
    if req.scene_motion not in (None, *SCENE_MOTIONS):
        raise ValueError(f"scene_motion must be one of {', '.join(SCENE_MOTIONS)}, got {req.scene_motion!r}")
    device = pick_device(req.device)
    parse_dtype(req.dtype, device)
    if req.regions is True and (req.storyboard is not None or not has_layout(req.prompt)):
        raise ValueError("regions need one prompt naming two objects, each with a colour, joined by 'and' "
                         "(e.g. 'a red square moving right and a blue circle growing on a black background')")
    seed = draw_seed() if req.seed is None else req.seed
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")

    # 2. The model, with its recommended settings for anything not given
    pipe = get_pipeline(req.model, device, req.dtype)
    defaults = getattr(pipe, "t2v_defaults", {})
    pipe.set_progress_bar_config(disable=not req.progress)
    kwargs = dict(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        num_frames=_given(req.num_frames, defaults.get("num_frames", 16)),
        height=_given(req.height, pipe.default_size),
        width=_given(req.width, pipe.default_size),
        num_inference_steps=_given(req.num_inference_steps, defaults.get("num_inference_steps", 25)),
        guidance_scale=_given(req.guidance_scale, defaults.get("guidance_scale", 9.0)),
        seed=seed,
    )
    callback = (lambda i, n, _latents: on_step(i + 1, n)) if on_step else None
    if req.regions is None:  # the model's default: t2v_model.json "defaults": {"regions": "shapes"}
        kwargs["regions"] = defaults.get("regions") == "shapes" and has_layout(req.prompt) and \
            regions_fit(defaults, kwargs["num_frames"], req.scene_motion)
    else:
        kwargs["regions"] = req.regions

    # 3. Generate (in windows past the model's length, or scene by scene), then write atomically
    model_scheduler = pipe.scheduler  # the cached pipeline goes back to the model's own solver afterwards
    if req.scheduler:
        pipe.set_scheduler(req.scheduler)
    try:
        frames = _generate(pipe, req, kwargs, defaults, callback)
    finally:
        pipe.scheduler = model_scheduler
    write_video(path, to_uint8(frames), fps=req.fps, overwrite=req.overwrite)
    return GenerateResult(path, seed, len(frames), kwargs["height"], kwargs["width"], req.fps)


def regions_fit(defaults: dict, num_frames: int, scene_motion: str | None = None) -> bool:
    """Whether a one-prompt video of num_frames is drawn in one pass, as regions need: at most the
    model's native length, or any length with scene_motion "keyframes" (None: the model's)."""
    return one_pass(num_frames, int(defaults.get("num_frames", 16)), scene_motion or defaults.get("scene_motion", "windows"))


def _generate(pipe, req: GenerateRequest, kwargs: dict, defaults: dict, callback):
    """Frames [F, H, W, 3] in [0, 1]: one pass, or windows past the model's native length / a storyboard."""
    native = int(defaults.get("num_frames", 16))
    use_regions = kwargs.pop("regions")
    if use_regions and not regions_fit(defaults, kwargs["num_frames"], req.scene_motion):
        raise ValueError(f"regions work in one pass: at most the model's {native} frames, or scene_motion keyframes; "
                         f"got {kwargs['num_frames']} frames")
    if use_regions:
        kwargs["regions"] = shapes_regions(req.prompt, kwargs["num_frames"], kwargs["height"], kwargs["width"])
    if req.storyboard is None and kwargs["num_frames"] <= native:
        return pipe(**kwargs, callback_on_step_end=callback).frames[0]
    from t2v.pipelines.long_video import LongVideoPipeline

    long = LongVideoPipeline(**pipe.components)
    long.t2v_defaults = defaults
    long.set_progress_bar_config(disable=not req.progress)
    if req.storyboard is not None:
        board = req.storyboard
        kwargs = {**kwargs, "prompt": None, "scenes": list(board.scenes), "num_frames": None,
                  "transition_frames": board.transition_frames,
                  "negative_prompt": board.negative_prompt if req.negative_prompt is None else req.negative_prompt}
    return long(**kwargs, scene_motion=req.scene_motion, callback_on_step_end=callback).frames[0]

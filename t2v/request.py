"""A generation request and its checks: the one place that says what a request may ask for.

The CLI, the job server and the web app all build a `GenerateRequest`, call `check()` before
anything is loaded (model-free rules) and `resolve(pipe)` once the model is known (its defaults,
its frame size, its region planner), so every door gives the same message for the same bad value.
Errors are `RequestError`s (a `ValueError`) that name the field; the server answers them with 422.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass
from pathlib import Path

from t2v.models.defaults import SCENE_MOTIONS, ModelDefaults
from t2v.pipelines.inversion import inversion_of
from t2v.pipelines.long_video.plan import one_pass
from t2v.pipelines.long_video.storyboard import (
    MAX_LONG_FRAMES,
    Storyboard,
    check_text,
    excerpt,
    fps_value,
    load_yaml,
    parse_storyboard,
)
from t2v.pipelines.schedulers import SCHEDULERS


MAX_SEED = 2**63
DEFAULT_FPS = 8.0
MAX_SIZE = 8192  # height and width, pixels (a server has its own, lower limits)
MAX_STEPS = 10_000
MAX_GUIDANCE = 100.0  # guidance far past the models' 1..20 only saturates (1e308 made all-black videos)


class RequestError(ValueError):
    """A bad request parameter: `field` names it, the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def draw_seed() -> int:
    return secrets.randbelow(2**31)


def regions_fit(defaults: ModelDefaults, num_frames: int, scene_motion: str | None = None) -> bool:
    """Whether one prompt of num_frames is drawn in one pass, as regions need: at most the model's
    native length, or any length drawn as keyframes (scene_motion; None: the model's)."""
    return one_pass(num_frames, defaults.num_frames, scene_motion or defaults.scene_motion)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: int | float) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # (math.isfinite overflows on a 400-digit integer)


@dataclass(frozen=True)
class GenerateRequest:
    """What to make and where to write it. None means: the model's default (after `resolve`)."""

    prompt: str | None = None
    output: Path | None = None
    storyboard: Storyboard | str | dict | None = None  # a parsed Storyboard, or its YAML/JSON text or mapping
    model: str | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    scheduler: str | None = None
    fps: float | None = None  # None: the storyboard's, else 8
    device: str = "auto"
    dtype: str | None = None
    overwrite: bool = False
    progress: bool = True
    regions: bool | None = None  # a prompt naming two objects, each heard in its own region; None: the model's
    scene_motion: str | None = None  # scenes past the model's length: "keyframes" or "windows"; None: the model's
    invert: bool | None = None  # a tuned model (t2v tune): start from its clip's inversion; None: when it has one

    def check(self) -> GenerateRequest:
        """The rules that need no model; returns the request with a parsed storyboard."""
        req = self
        if (req.prompt is None) == (req.storyboard is None):
            field = "storyboard" if req.prompt is not None else "prompt"
            raise RequestError(
                field,
                "give either a prompt or a storyboard, not both"
                if req.prompt is not None
                else "a prompt (or a storyboard) is required",
            )
        if req.prompt is not None and (not isinstance(req.prompt, str) or not req.prompt.strip()):
            raise RequestError("prompt", f"prompt must be a non-empty string, got {excerpt(req.prompt)}")
        if req.negative_prompt is not None and not isinstance(req.negative_prompt, str):
            raise RequestError(
                "negative_prompt", f"negative_prompt must be a string, got {excerpt(req.negative_prompt)}"
            )
        for name in ("prompt", "negative_prompt"):
            if getattr(req, name) is not None:
                _field(name, check_text, name, getattr(req, name))
        if req.storyboard is not None:
            req = dataclasses.replace(req, storyboard=_parse(req.storyboard))
            if req.num_frames is not None:
                raise RequestError(
                    "num_frames", "num_frames is not used with a storyboard: give the frames of each scene"
                )
            if req.regions:
                raise RequestError("regions", "regions work on one prompt, not on a storyboard")
        check_numbers(req)
        if req.scheduler is not None and req.scheduler not in SCHEDULERS:
            raise RequestError(
                "scheduler", f"unknown scheduler {excerpt(req.scheduler)}; choose one of: {', '.join(SCHEDULERS)}"
            )
        if req.scene_motion is not None and req.scene_motion not in SCENE_MOTIONS:
            raise RequestError(
                "scene_motion",
                f"scene_motion must be one of {', '.join(SCENE_MOTIONS)}, got {excerpt(req.scene_motion)}",
            )
        if req.regions is not None and not isinstance(req.regions, bool):
            raise RequestError("regions", f"regions must be true, false or absent, got {excerpt(req.regions)}")
        if req.invert is not None and not isinstance(req.invert, bool):
            raise RequestError("invert", f"invert must be true, false or absent, got {excerpt(req.invert)}")
        if req.invert and req.storyboard is not None:
            raise RequestError("invert", "a tuned model's inversion starts one prompt, not a storyboard")
        return req

    def resolve(self, pipe) -> GenerateRequest:
        """Checked and complete for `pipe` (its `defaults`, `default_size`, `vae_scale_factor`):
        every None filled with the model's default, a seed drawn, regions decided, and for a tuned model
        whether it starts from its inversion (then frames, size and steps are the inversion's)."""
        req = _start(self.check(), pipe)
        d, board = pipe.defaults, req.storyboard
        req = dataclasses.replace(
            req,
            num_frames=board.num_frames if board else _given(req.num_frames, d.num_frames),
            height=_given(req.height, pipe.default_size),
            width=_given(req.width, pipe.default_size),
            num_inference_steps=_given(req.num_inference_steps, d.num_inference_steps),
            guidance_scale=float(_given(req.guidance_scale, d.guidance_scale)),
            seed=draw_seed() if req.seed is None else req.seed,
            fps=float(_given(req.fps, board.fps if board else DEFAULT_FPS)),
        )
        check_size(req, pipe.vae_scale_factor)
        return dataclasses.replace(req, regions=_regions(req, d))


def _start(req: GenerateRequest, pipe) -> GenerateRequest:
    """`invert` decided: True (from the tuned model's stored inversion, with its frames, size and DDIM steps)
    or False (from noise)."""
    inversion = inversion_of(pipe)
    if inversion is None:
        if req.invert:
            raise RequestError("invert", "this model has no inversion to start from (a model made by t2v tune has)")
        return dataclasses.replace(req, invert=False)
    if req.invert is False or req.storyboard is not None:
        return dataclasses.replace(req, invert=False)
    _, _, frames, h, w = inversion.latents.shape
    fixed = {"num_frames": frames, "height": h * pipe.vae_scale_factor, "width": w * pipe.vae_scale_factor}
    fixed["num_inference_steps"] = inversion.num_inference_steps
    for name, value in fixed.items():
        given = getattr(req, name)
        if given is not None and given != value:
            raise RequestError(
                name,
                f"{name} must be the inversion's {value} to start from this tuned model's clip, got {given}; "
                "or start from noise (--no-invert)",
            )
    if req.scheduler not in (None, "ddim"):
        raise RequestError(
            "scheduler",
            f"starting from the inversion needs the ddim scheduler it was made with, got {excerpt(req.scheduler)}; "
            "or start from noise (--no-invert)",
        )
    return dataclasses.replace(req, invert=True, **fixed)


def _given(value, default):
    return default if value is None else value


def _field(name: str, check, *args) -> None:
    try:
        check(*args)
    except ValueError as e:
        raise RequestError(name, str(e)) from None


def check_numbers(req) -> None:
    """Every number of a request within its bounds (a huge integer or float is refused here, before it meets
    a tensor); fields a kind of request does not have are skipped."""
    frames = getattr(req, "num_frames", None)
    if frames is not None and (not _is_int(frames) or not 1 <= frames <= MAX_LONG_FRAMES):
        raise RequestError(
            "num_frames", f"num_frames must be an integer in [1, {MAX_LONG_FRAMES}], got {excerpt(frames)}"
        )
    for name, top in (("height", MAX_SIZE), ("width", MAX_SIZE), ("num_inference_steps", MAX_STEPS)):
        value = getattr(req, name, None)
        if value is not None and (not _is_int(value) or value < 1):
            raise RequestError(name, f"{name} must be an integer >= 1, got {excerpt(value)}")
        if value is not None and value > top:
            raise RequestError(name, f"{name} must be at most {top}, got {excerpt(value)}")
    g = getattr(req, "guidance_scale", None)
    if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not _finite(g)):
        raise RequestError("guidance_scale", f"guidance_scale must be a finite number, got {excerpt(g)}")
    if g is not None and not 0 <= g <= MAX_GUIDANCE:
        raise RequestError("guidance_scale", f"guidance_scale must be in [0, {MAX_GUIDANCE:g}], got {excerpt(g)}")
    seed = getattr(req, "seed", None)
    if seed is not None and (not _is_int(seed) or not 0 <= seed < MAX_SEED):
        raise RequestError("seed", f"seed must be an integer in [0, 2**63), got {excerpt(seed)}")
    if getattr(req, "fps", None) is not None:
        _field("fps", fps_value, req.fps)


def check_texts(req) -> None:
    """The prompt (required, non-empty) and the negative prompt (optional) of a one-prompt request."""
    if not isinstance(req.prompt, str) or not req.prompt.strip():
        raise RequestError("prompt", f"prompt must be a non-empty string, got {excerpt(req.prompt)}")
    if req.negative_prompt is not None and not isinstance(req.negative_prompt, str):
        raise RequestError("negative_prompt", f"negative_prompt must be a string, got {excerpt(req.negative_prompt)}")
    for name in ("prompt", "negative_prompt"):
        if getattr(req, name) is not None:
            _field(name, check_text, name, getattr(req, name))


def check_size(req, factor: int) -> None:
    """height and width multiples of the VAE's downsampling factor."""
    for name in ("height", "width"):
        value = getattr(req, name)
        if value % factor:
            raise RequestError(
                name,
                f"{name} must be a positive multiple of {factor} (the VAE's downsampling factor), "
                f"got {value}; nearest allowed: {max(factor, round(value / factor) * factor)}",
            )


def _parse(board) -> Storyboard:
    if isinstance(board, Storyboard):
        return board
    try:
        return parse_storyboard(load_yaml(board) if isinstance(board, str) else board)
    except ValueError as e:
        raise RequestError("storyboard", str(e)) from None


def _regions(req: GenerateRequest, d: ModelDefaults) -> bool:
    """Regions on or off: asked for (True: checked), or the model's default where they apply."""
    planner = d.region_planner
    if req.regions is None:
        return (
            planner is not None
            and req.storyboard is None
            and planner.has_layout(req.prompt)
            and regions_fit(d, req.num_frames, req.scene_motion)
        )
    if not req.regions:
        return False
    if planner is None:
        raise RequestError("regions", 'this model has no region planner (its t2v_model.json names none in "defaults")')
    if not planner.has_layout(req.prompt):
        raise RequestError("regions", f"regions need {planner.LAYOUT_HELP}")
    if not regions_fit(d, req.num_frames, req.scene_motion):
        raise RequestError(
            "regions",
            f"regions work in one pass: at most the model's {d.num_frames} frames, or "
            f"scene_motion keyframes; got {req.num_frames} frames",
        )
    return True

"""A model's recommended settings: the one place that knows them and their fallbacks.

A t2v model directory may carry `t2v_model.json` with a "defaults" mapping (the embedded model's:
25 steps, guidance 2.5, keyframed scenes, automatic transitions, Shapes-world regions). Models that
do not say (ModelScope and other diffusers checkpoints) get the fallbacks below. The pipeline reads
them once at load time and keeps them on the UNet (the weights they belong to): `pipe.defaults` in
every pipeline built from the same components; every door (CLI, job server, web app, evaluation)
reads them from there.

Regions are planned by a named planner: a module with `has_layout(prompt) -> bool`,
`plan_regions(prompt, num_frames, height, width) -> list[Region] | None`, `LAYOUT_HELP` (what
a prompt needs for regions) and `prompt_warning(prompt) -> str | None` (what the model cannot draw,
emitted as a `PromptWarning` by the pipelines). The embedded model names
"shapes" (its world's caption grammar, `t2v.world.layout`), so only its defaults reach the world.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from dataclasses import dataclass
from types import ModuleType


AUTO = "auto"  # transition_frames: the shortest dissolve that keeps every frame change small
SCENE_MOTIONS = ("keyframes", "windows")
REGION_PLANNERS = {"shapes": "t2v.world.layout"}  # name in t2v_model.json -> module


class PromptWarning(UserWarning):
    """A prompt this model cannot draw (it names nothing the model knows)."""


class _Defaults:
    """What the defaults of every kind of model share: reading t2v_model.json, prompt warnings."""

    @classmethod
    def read(cls, info):
        """From a checked model's ModelInfo (t2v.models.loading); a bad t2v_model.json is a ModelError."""
        from t2v.models.loading import ModelError

        try:
            return cls.from_meta(info.meta)
        except ValueError as e:
            raise ModelError(f"{info.path}/t2v_model.json: {e}") from e

    @classmethod
    def from_meta(cls, meta: dict):
        """From a parsed t2v_model.json: its "defaults" mapping (absent keys take the fallbacks)."""
        given = dict(meta.get("defaults", {}))
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"defaults: unknown keys {', '.join(unknown)}")
        if isinstance(given.get("guidance_scale"), int):
            given["guidance_scale"] = float(given["guidance_scale"])
        return cls(**given)

    @property
    def region_planner(self) -> ModuleType | None:
        """The module that plans this model's regions (imported on first use), or None."""
        return None if self.regions is None else importlib.import_module(REGION_PLANNERS[self.regions])

    def warn_about(self, prompts) -> None:
        """A `PromptWarning` for each prompt the model's planner says it cannot draw."""
        check = getattr(self.region_planner, "prompt_warning", None)
        for prompt in [prompts] if isinstance(prompts, str) else prompts or ():
            message = check(prompt) if check is not None and isinstance(prompt, str) else None
            if message:
                warnings.warn(message, PromptWarning, stacklevel=3)


@dataclass(frozen=True)
class ModelDefaults(_Defaults):
    """Recommended settings; the field defaults are the fallbacks for models that do not say.

    num_frames: the native clip length (windows and keyframes are this long). num_inference_steps:
    50 and guidance_scale: 9, as in diffusers' ModelScope pipeline. scene_motion: how a scene longer
    than a clip is drawn ("windows" for models whose clips show ongoing motion; "keyframes" for
    models whose motion spans the clip).
    transition_frames: frames blended across a storyboard cut, or "auto". regions: the name of a
    region planner (`REGION_PLANNERS`), or None for a model without one.
    """

    num_frames: int = 16
    num_inference_steps: int = 50  # diffusers' TextToVideoSDPipeline default
    guidance_scale: float = 9.0
    scene_motion: str = "windows"
    transition_frames: int | str = 8
    regions: str | None = None

    def __post_init__(self):
        for name in ("num_frames", "num_inference_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"defaults: {name!r} must be an integer >= 1, got {value!r}")
        if not isinstance(self.guidance_scale, (int, float)) or isinstance(self.guidance_scale, bool):
            raise ValueError(f"defaults: 'guidance_scale' must be a number, got {self.guidance_scale!r}")
        if self.scene_motion not in SCENE_MOTIONS:
            raise ValueError(
                f"defaults: 'scene_motion' must be one of {', '.join(SCENE_MOTIONS)}, got {self.scene_motion!r}"
            )
        t = self.transition_frames
        if t != AUTO and (not isinstance(t, int) or isinstance(t, bool) or t < 0):
            raise ValueError(f"defaults: 'transition_frames' must be an integer >= 0 or {AUTO!r}, got {t!r}")
        if self.regions is not None and self.regions not in REGION_PLANNERS:
            raise ValueError(f"defaults: 'regions' must be one of {', '.join(REGION_PLANNERS)}, got {self.regions!r}")


WARPS = ("latent", "pixel")


@dataclass(frozen=True)
class ImageModelDefaults(_Defaults):
    """Recommended settings of a text-to-image model, for `t2v image`, `t2v zero` and the pipelines built on
    it; the field defaults are the fallbacks: Stable Diffusion's 50 steps and guidance 7.5, and
    Text2Video-Zero's 8 frames, t0/t1 at steps 44/47 of 50 and latent warping. zero_shot_steps: the
    denoising steps of a zero-shot video (t0 and t1 index them). warp: how a zero-shot frame's motion is
    applied (t2v.pipelines.text_to_video_zero). regions: as ModelDefaults (used here for prompt warnings).
    image_guidance_scale: an Instruct-Pix2Pix model's pull towards the source (Video Instruct-Pix2Pix: 1.0);
    shared_noise: whether its edits start every frame from one noise (the original: a noise per frame)."""

    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.0
    shared_noise: bool = False
    video_length: int = 8
    zero_shot_steps: int = 50
    t0: int = 44
    t1: int = 47
    warp: str = "latent"
    regions: str | None = None

    def __post_init__(self):
        for name in ("num_inference_steps", "video_length", "zero_shot_steps", "t1"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"defaults: {name!r} must be an integer >= 1, got {value!r}")
        if not isinstance(self.t0, int) or not 0 <= self.t0 < self.t1 < self.zero_shot_steps:
            raise ValueError(
                f"defaults: need 0 <= t0 < t1 < zero_shot_steps, got {self.t0}, {self.t1}, {self.zero_shot_steps}"
            )
        for name in ("guidance_scale", "image_guidance_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"defaults: {name!r} must be a number, got {value!r}")
        if not isinstance(self.shared_noise, bool):
            raise ValueError(f"defaults: 'shared_noise' must be true or false, got {self.shared_noise!r}")
        if self.warp not in WARPS:
            raise ValueError(f"defaults: 'warp' must be one of {', '.join(WARPS)}, got {self.warp!r}")
        if self.regions is not None and self.regions not in REGION_PLANNERS:
            raise ValueError(f"defaults: 'regions' must be one of {', '.join(REGION_PLANNERS)}, got {self.regions!r}")

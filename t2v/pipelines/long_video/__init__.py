"""Long videos and storyboards: the format (`storyboard`), the planning (`plan`), the tensor work
(`blend`) and the pipeline (`pipeline`). The format and the planning need no torch; the rest is
imported on first use, so the CLI and the job server can check a storyboard cheaply."""

import importlib

from .plan import Pass, Plan, one_pass, plan_dissolve, plan_keyframes, plan_windows, scene_mix, windows
from .storyboard import MAX_FPS, MAX_LONG_FRAMES, Scene, Storyboard, load_storyboard, parse_storyboard


_LAZY = {
    "LongVideoPipeline": ".pipeline",
    "crossfade": ".blend",
    "choose_transitions": ".blend",
    "expand_keyframes": ".blend",
    "reschedule_scene_noise": ".blend",
}


def __getattr__(name):  # torch and diffusers only when the pipeline is used (start-up time)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_FPS",
    "MAX_LONG_FRAMES",
    "Pass",
    "Plan",
    "Scene",
    "Storyboard",
    "load_storyboard",
    "one_pass",
    "parse_storyboard",
    "plan_dissolve",
    "plan_keyframes",
    "plan_windows",
    "scene_mix",
    "windows",
    *_LAZY,
]

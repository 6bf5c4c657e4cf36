"""Schedulers by name, swapped on a pipeline with diffusers' `from_config`.

The names follow the community's habits (A1111, ComfyUI): "dpm++" is DPM-Solver++ (2M), the
embedded model's own scheduler, as in the ModelScope blog recipe.
"""

from __future__ import annotations

import diffusers


# name -> (diffusers class name, extra config overrides)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
}


def scheduler_names() -> list[str]:
    return list(SCHEDULERS)


def make_scheduler(name: str, config) -> diffusers.SchedulerMixin:
    """A scheduler called `name`, built with `from_config` from another scheduler's `config`."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    cls_name, overrides = SCHEDULERS[name]
    if cls_name in ("DDIMScheduler", "DDPMScheduler") and "clip_sample" not in config:
        overrides = {**overrides, "clip_sample": False}  # (their default clips x0 to [-1, 1]: wrong for latents)
    cls = getattr(diffusers, cls_name)
    return cls.from_config(config, **overrides)

"""DDIM inversion of a video's latents, and loading a one-shot tuned model (Tune-A-Video).

Tune-A-Video edits a clip by inverting its latents to noise with DDIM, without guidance and with the
empty (or the source) prompt, then sampling from that noise with the edited prompt. `ddim_invert`
runs diffusers' `DDIMInverseScheduler` (built from the pipeline scheduler's config) with the video
UNet; sampling back uses the matching `DDIMScheduler` from `ddim_schedulers`, with the same number of
steps: the inverse's last step undoes the sampler's first.

A tuned model (t2v.training.tune.save_tuned) is a diffusers-layout `TextToVideoSDPipeline` folder with
the inversion latents in `inversion/latents.safetensors`; `load_tuned` loads it with its
sparse-causal attention switched on, `load_inversion` reads the latents. `prepare_tuned` does the same
to a pipeline already loaded from such a folder (`t2v generate` does it to every model it loads) and keeps
the inversion on its UNet, where `inversion_of(pipe)` finds it.

Example:
    >>> pipe, latents = load_tuned("tuned-skier")
    >>> pipe.scheduler = ddim_schedulers(pipe.scheduler.config)[0]
    >>> video = pipe("a panda is skiing", latents=latents, num_frames=latents.shape[2],
    ...              num_inference_steps=50, guidance_scale=12.5).frames[0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from safetensors.torch import load_file
from tqdm.auto import tqdm

from t2v.models.inflate import sparse_causal_attention
from t2v.models.loading import ModelInfo, prepare_model_dir, quiet

from .denoise import guided_noise, scheduler_step
from .text_to_video import TextToVideoPipeline


INVERSION_FILE = "inversion/latents.safetensors"
DDIM_SPACINGS = ("leading", "trailing")  # what DDIMInverseScheduler supports
INVERSION_ATTRIBUTE = "t2v_inversion"  # the UNet attribute with a tuned model's Inversion (prepare_tuned sets it)


@dataclass(frozen=True)
class Inversion:
    """A tuned model's stored DDIM inversion: the latents [1, C, F, h, w] of its clip at the last of
    `num_inference_steps` DDIM timesteps; DDIM sampling from them with as many steps gives the clip back."""

    latents: torch.Tensor
    num_inference_steps: int

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[2])


def ddim_schedulers(config) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """A DDIM sampler and its inverse on the same timesteps, from any scheduler's config (noise schedule,
    prediction type and offset kept). Latents are not clipped unless the config says so, and a spacing
    the inverse lacks ("linspace") becomes "leading"."""
    overrides = {"clip_sample": config.get("clip_sample", False)}
    if config.get("timestep_spacing", "leading") not in DDIM_SPACINGS:
        overrides["timestep_spacing"] = "leading"
    with quiet():  # (another solver's config has entries DDIM has no use for: diffusers would list them)
        return DDIMScheduler.from_config(config, **overrides), DDIMInverseScheduler.from_config(config, **overrides)


def video_posterior(vae, video: torch.Tensor, chunk_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The first stage's posterior of frames [F, 3, H, W] in [-1, 1]: (mean, std) latents [1, C, F, h, w],
    scaled by the VAE's scaling factor (std is 0 for deterministic first stages). Encoded `chunk_size`
    frames at a time."""
    means, stds = [], []
    with torch.no_grad():
        for part in video.to(device=vae.device, dtype=vae.dtype).split(chunk_size):
            out = vae.encode(part)
            dist = getattr(out, "latent_dist", None)
            means.append(out.latents if dist is None else dist.mean)
            stds.append(torch.zeros_like(means[-1]) if dist is None else dist.std)
    scale = vae.config.scaling_factor
    # contiguous: a channels-last input crashes torch 2.13's CPU GroupNorm backward (trainable affine) in tuning
    return tuple((torch.cat(x).permute(1, 0, 2, 3)[None] * scale).contiguous() for x in (means, stds))


def encode_video(vae, video: torch.Tensor) -> torch.Tensor:
    """Latents [1, C, F, h, w] of frames [F, 3, H, W] in [-1, 1]: the posterior mean, scaled as the
    pipelines expect."""
    return video_posterior(vae, video)[0]


@torch.no_grad()
def ddim_invert(
    pipe,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    num_inference_steps: int = 50,
    *,
    cross_attention_kwargs: dict | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Clean latents [B, C, F, h, w] -> the latents at the last of `num_inference_steps` DDIM timesteps,
    from which DDIM sampling with the same embeddings and steps gives them back (approximately).

    pipe: a pipeline, or a dict such as `pipe.components`, with a video `unet` and a `scheduler` (its
    config gives the noise schedule). prompt_embeds: [B or 1, T, D] (the empty prompt's, as Tune-A-Video,
    or the source caption's); no classifier-free guidance.
    """
    unet, scheduler = (pipe["unet"], pipe["scheduler"]) if isinstance(pipe, Mapping) else (pipe.unet, pipe.scheduler)
    if latents.ndim != 5:
        raise ValueError(f"latents must be [B, C, F, h, w], got shape {tuple(latents.shape)}")
    if prompt_embeds.ndim != 3 or prompt_embeds.shape[0] not in (1, latents.shape[0]):
        raise ValueError(
            f"prompt_embeds must be [1 or {latents.shape[0]}, T, D], got shape {tuple(prompt_embeds.shape)}"
        )
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
    inverse = ddim_schedulers(scheduler.config)[1]
    inverse.set_timesteps(num_inference_steps, device=latents.device)
    embeds = prompt_embeds.expand(latents.shape[0], -1, -1).to(device=unet.device, dtype=unet.dtype)
    latents = latents.to(device=unet.device, dtype=unet.dtype)
    for t in tqdm(inverse.timesteps, desc="DDIM inversion", disable=not progress):
        noise = guided_noise(unet, inverse, latents, t, embeds, 1.0, cross_attention_kwargs)
        latents = scheduler_step(inverse, noise, t, latents)
    return latents


def load_inversion(path: str | Path) -> torch.Tensor | None:
    """The inversion latents [B, C, F, h, w] saved with a tuned model, or None if it has none."""
    file = Path(path) / INVERSION_FILE
    return load_file(file)["latents"] if file.is_file() else None


def load_tuned(path: str | Path, **kwargs) -> tuple[TextToVideoPipeline, torch.Tensor | None]:
    """A tuned model's pipeline, with sparse-causal attention switched on where its t2v_model.json says
    so, and its inversion latents (or None). kwargs go to `TextToVideoPipeline.from_pretrained`."""
    pipe = TextToVideoPipeline.from_pretrained(path, **kwargs)
    inversion = prepare_tuned(pipe, prepare_model_dir(path))
    return pipe, None if inversion is None else inversion.latents


def prepare_tuned(pipe, info: ModelInfo) -> Inversion | None:
    """What a tuned model folder (`info`, from t2v.models.loading.prepare_model_dir) needs beyond diffusers'
    loading: sparse-causal attention switched on where its t2v_model.json says so, and its inversion kept
    on the UNet (`inversion_of`). Returns the inversion, or None for a model that has none (any other model:
    nothing changes)."""
    meta = info.meta
    if meta.get("spatial_attention") == "sparse-causal":
        sparse_causal_attention(pipe.unet)
    latents = load_inversion(info.path)
    steps = (meta.get("inversion") or {}).get("num_inference_steps")
    inversion = Inversion(latents, int(steps)) if latents is not None and steps else None
    setattr(pipe.unet, INVERSION_ATTRIBUTE, inversion)
    return inversion


def inversion_of(pipe) -> Inversion | None:
    """The stored inversion of a tuned model's pipeline (see `prepare_tuned`), or None."""
    return getattr(getattr(pipe, "unet", None), INVERSION_ATTRIBUTE, None)

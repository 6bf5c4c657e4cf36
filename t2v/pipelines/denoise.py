"""The guided denoising step that every pipeline shares.

`guided_noise` runs the UNet once on [unconditional, conditional] halves and applies
classifier-free guidance; `scheduler_step` steps a video's latents with a scheduler made for
images, frames as images [B*F, C, h, w], as ModelScope does (so stochastic schedulers draw the same
noise as diffusers for the same generator). A pipeline that fuses several predictions per frame
(long videos) calls the two separately.
"""

from __future__ import annotations

import torch


def guided_noise(
    unet,
    scheduler,
    latents: torch.Tensor,
    t,
    embeds: torch.Tensor,
    guidance_scale: float,
    cross_attention_kwargs: dict | None = None,
) -> torch.Tensor:
    """The guided noise prediction for latents [B, C, F, h, w]. embeds: [negative; positive]
    ([2B, T, D]) with guidance, else [B, T, D]."""
    do_cfg = embeds.shape[0] == 2 * latents.shape[0]
    model_input = scheduler.scale_model_input(torch.cat([latents] * 2) if do_cfg else latents, t)
    noise_pred = unet(
        model_input, t, encoder_hidden_states=embeds, cross_attention_kwargs=cross_attention_kwargs, return_dict=False
    )[0]
    if do_cfg:
        uncond, cond = noise_pred.chunk(2)
        noise_pred = uncond + guidance_scale * (cond - uncond)
    return noise_pred


def scheduler_step(scheduler, noise_pred: torch.Tensor, t, latents: torch.Tensor, **step_kwargs) -> torch.Tensor:
    """One solver step on latents [B, C, F, h, w], the frames stepped as images."""
    b, c, n, h, w = latents.shape

    def as_images(x):
        return x.permute(0, 2, 1, 3, 4).reshape(b * n, c, h, w)

    latents = scheduler.step(as_images(noise_pred), t, as_images(latents), **step_kwargs).prev_sample
    return latents.reshape(b, n, c, h, w).permute(0, 2, 1, 3, 4)


def step_end(pipe, callback_on_step_end, tensor_inputs, i: int, t, values: dict) -> dict:
    """diffusers' step-end hook: `callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict` sees
    the tensors named in `tensor_inputs`; those it returns replace the pipeline's (others are ignored)."""
    if callback_on_step_end is None:
        return values
    outputs = callback_on_step_end(pipe, i, t, {k: values[k] for k in tensor_inputs}) or {}
    return {**values, **{k: v for k, v in outputs.items() if k in values}}

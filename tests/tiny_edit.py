"""A tiny randomly initialised Instruct-Pix2Pix model for the tiny SD components (tests/tiny2d.py): a 2D UNet
that reads 2 x the latent channels (noisy latents and source latents side by side), seeded, CPU, no downloads."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from tiny2d import tiny_sd_components

from t2v.pipelines.video_instruct_pix2pix import VideoInstructPix2PixPipeline


def tiny_edit_unet(latent_channels: int = 4, cross_attention_dim: int = 16) -> UNet2DConditionModel:
    """tiny2d's UNet with 2 x latent_channels in and latent_channels out, as Instruct-Pix2Pix's."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=2 * latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def tiny_edit_components(vae: str = "kl") -> dict:
    """tiny_sd_components(vae=...) (KL VAE: 16x16 latents, 32x32 frames; CLIP; DDIM) with an Instruct-Pix2Pix
    UNet in place of the text-to-image one."""
    components = tiny_sd_components(vae=vae)
    components["unet"] = tiny_edit_unet(components["vae"].config.latent_channels)
    return components


def tiny_edit_pipeline(vae: str = "kl") -> VideoInstructPix2PixPipeline:
    pipe = VideoInstructPix2PixPipeline(**tiny_edit_components(vae))
    pipe.set_progress_bar_config(disable=True)
    return pipe

"""Tiny randomly initialised ControlNets for the tiny SD components (tests/tiny2d.py), seeded, CPU, no downloads.

A fresh ControlNet adds nothing (its output convolutions start at zero), so the tiny one has those
convolutions drawn at random too: its control images change the picture."""

from __future__ import annotations

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from tiny2d import tiny_sd_components

from t2v.pipelines.control_video import ControlVideoPipeline


def tiny_controlnet(unet: UNet2DConditionModel, strength: float = 0.5) -> ControlNetModel:
    """A ControlNet copied from `unet` (ControlNetModel.from_unet) whose zero convolutions are random
    (normal, std `strength`); its conditioning embedding downsamples 2x, as the tiny VAE."""
    torch.manual_seed(1)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8))
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    zero_convs.append(controlnet.controlnet_cond_embedding.conv_out)
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.normal_(0, strength)
            conv.bias.normal_(0, strength)
    return controlnet.eval()


def tiny_control_components() -> dict:
    """tiny_sd_components() (KL VAE: 16x16 latents, 32x32 frames; CLIP; DDIM) and a tiny `controlnet`."""
    components = tiny_sd_components()
    return {**components, "controlnet": tiny_controlnet(components["unet"])}


def tiny_control_pipeline() -> ControlVideoPipeline:
    pipe = ControlVideoPipeline(**tiny_control_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe

"""Stage "controlnet": a ControlNet (Zhang et al., 2023) for the embedded text-to-image model, on Shapes stills.

The recipe of the paper and of diffusers' `train_controlnet.py`: the ControlNet starts as a copy of the frozen
text-to-image UNet's encoder (`ControlNetModel.from_unet`) with zero convolutions on its outputs, so it
first changes nothing; it learns to steer the frozen UNet from a control map of each still. Control maps are
exact here: "edges" are OpenCV's Canny edges of the rendered still (as `t2v control edges` extracts them
from any video), "depth" the world's depth map (t2v.world.depth: near is bright; trained on
"shapes_depth_stills", whose objects overlap). Captions are still captions, dropped with probability
`caption_dropout` (the paper drops half, so the control alone must carry the layout). Exported as a
diffusers `ControlNetModel` folder (safetensors) that `ControlVideoPipeline` and diffusers' ControlNet
pipelines load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

from t2v.controls import canny_maps
from t2v.world.depth import world_depth_maps
from t2v.world.shapes import scene_from_dict

from .config import TrainConfig
from .first_stage import encode, load_first_stage
from .loop import noise_schedule, run
from .unet import load_text_encoder, text_embedder


CONTROLS = ("edges", "depth")


def control_maps(kind: str, video: torch.Tensor, scenes: list[str]) -> torch.Tensor:
    """Control maps [B, k, 3, H, W] in [0, 1] of stills [B, k, 3, H, W] in [-1, 1] (their scenes as JSON)."""
    frames = ((video.permute(0, 1, 3, 4, 2) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    if kind == "edges":
        maps = [canny_maps(f) for f in frames]
    else:
        maps = [world_depth_maps(f, scene_from_dict(json.loads(s))) for f, s in zip(frames, scenes)]
    return torch.from_numpy(np.stack(maps)).permute(0, 1, 4, 2, 3).float().div(255).to(video.device)


def train_controlnet(config: TrainConfig) -> Path:
    if config.control not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {config.control!r}")
    if config.data.kind not in ("shapes_stills", "shapes_depth_stills"):
        raise ValueError(
            "stage 'controlnet' trains on data.kind 'shapes_stills' or 'shapes_depth_stills', "
            f"got {config.data.kind!r}"
        )
    if not config.init_from or not Path(config.init_from).is_dir():
        raise ValueError(
            "init_from must be the text-to-image model's unet directory for stage 'controlnet', "
            f"got {config.init_from!r}"
        )
    if not config.vae_path or not Path(config.vae_path).is_dir():
        raise ValueError(f"vae_path must be a trained first-stage directory, got {config.vae_path!r}")
    vae = load_first_stage(config.vae_path).eval().requires_grad_(False)
    text_encoder, tokenizer = load_text_encoder(config.text_encoder)
    unet = UNet2DConditionModel.from_pretrained(config.init_from).eval().requires_grad_(False)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 96))
    embed = text_embedder(tokenizer, text_encoder, config.text_cache_size)
    noise_scheduler = DDPMScheduler(**noise_schedule(config.noise_shift), prediction_type=config.prediction_type)

    def loss_fn(model, batch):
        video = batch["video"]  # [B, k, 3, H, W]
        b, k = video.shape[:2]
        maps = control_maps(config.control, video, batch["scene"]).flatten(0, 1)
        with torch.no_grad():
            vae.to(video.device)
            latents = encode(vae, video.flatten(0, 1)) * vae.config.scaling_factor
        captions = ["" if torch.rand(()) < config.caption_dropout else c for c in batch["caption"] for _ in range(k)]
        cond = embed(captions, video.device)
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b * k,), device=latents.device)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        down, mid = model(noisy, t, encoder_hidden_states=cond, controlnet_cond=maps, return_dict=False)
        unet.to(video.device)
        pred = unet(noisy, t, cond, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        target = noise if config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def export(model):
        path = Path(config.output_dir) / "controlnet"
        model.eval().save_pretrained(path, safe_serialization=True)
        return path

    return run(config, controlnet, loss_fn, export)

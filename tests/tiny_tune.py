"""Tiny components for one-shot video tuning: a 2D UNet that inflates, the parts around it, a clip."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from tiny import tiny_clip_text_encoder, tiny_clip_tokenizer, tiny_vae

from t2v.models.inflate import inflate_unet, sparse_causal_attention


def tiny_unet2d(use_linear_projection: bool = True) -> UNet2DConditionModel:
    """8 and 16 channels with 2 and 4 heads: head dimension 4 in every block, as the 3D layout needs."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=(2, 4),
        norm_num_groups=4,
        use_linear_projection=use_linear_projection,
    ).eval()


def tiny_inflated(sparse_causal: bool = True):
    unet = inflate_unet(tiny_unet2d())
    return sparse_causal_attention(unet) if sparse_causal else unet


def ddim() -> DDIMScheduler:
    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)


def tiny_parts() -> dict:
    """vae (KL, factor 2: 16x16 frames -> 8x8 latents), text_encoder, tokenizer (CLIP), scheduler (DDIM)."""
    tokenizer = tiny_clip_tokenizer()
    return {
        "vae": tiny_vae().eval(),
        "text_encoder": tiny_clip_text_encoder(len(tokenizer)).eval(),
        "tokenizer": tokenizer,
        "scheduler": ddim(),
    }


def tiny_clip(frames: int = 4, size: int = 16) -> torch.Tensor:
    """Frames [F, 3, size, size] in [-1, 1]: a red square moving right one pixel a frame on grey."""
    video = torch.full((frames, 3, size, size), -0.2)
    for f in range(frames):
        video[f, :, 4:10, 2 + f : 8 + f] = torch.tensor([0.9, -0.8, -0.8])[:, None, None]
    return video


@torch.no_grad()
def fixed_loss(unet, parts: dict, video: torch.Tensor, caption: str, n: int = 6) -> float:
    """The noise-prediction loss of the clip's mean latents at n fixed timesteps and noises (epsilon)."""
    from t2v.pipelines.inversion import encode_video

    latents = encode_video(parts["vae"], video)
    tokens = parts["tokenizer"]([caption], padding="max_length", truncation=True, return_tensors="pt")
    embeds = parts["text_encoder"](tokens.input_ids)[0]
    scheduler, generator, total = parts["scheduler"], torch.Generator().manual_seed(123), 0.0
    for t in torch.linspace(50, 950, n).long():
        noise = torch.randn(latents.shape, generator=generator)
        pred = unet(scheduler.add_noise(latents, noise, t[None]), t, encoder_hidden_states=embeds).sample
        total += torch.nn.functional.mse_loss(pred, noise).item()
    return total / n

"""Tiny randomly initialised Stable-Diffusion-layout components (2D UNet), seeded, CPU, no downloads."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from tiny import tiny_bert, tiny_clip_text_encoder, tiny_clip_tokenizer, tiny_vae
from transformers import BertTokenizerFast

from t2v.models.patch_vae import PatchAutoencoder
from t2v.models.text_encoders import minilm_dir
from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline


def tiny_unet2d(in_channels: int = 4, cross_attention_dim: int = 16) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=4,
    )


def ddim() -> DDIMScheduler:
    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)


def patch_codec(patch_size: int = 8) -> PatchAutoencoder:
    """t2v's PatchAutoencoder as an exact codec: each 8x8 RGB patch's 192 values are its latent channels."""
    channels = 3 * patch_size * patch_size
    vae = PatchAutoencoder(patch_size=patch_size, latent_channels=channels)
    eye = torch.eye(channels).reshape(channels, 3, patch_size, patch_size)
    with torch.no_grad():
        vae.encoder.weight.copy_(eye)
        vae.decoder.weight.copy_(eye)
        vae.encoder.bias.zero_()
        vae.decoder.bias.zero_()
    return vae


def tiny_sd_components(encoder: str = "clip", vae: str = "kl") -> dict:
    """vae, text_encoder, tokenizer, unet, scheduler (DDIM): the KL VAE (16x16 latents -> 32x32 frames by
    default) or an exact 8x8 patch codec ("patch": 192 latent channels; pass height=width=32 for 4x4)."""
    if encoder == "clip":
        tokenizer = tiny_clip_tokenizer()
        text_encoder = tiny_clip_text_encoder(len(tokenizer))
    else:
        tokenizer = BertTokenizerFast.from_pretrained(minilm_dir(), model_max_length=16)
        text_encoder = tiny_bert(tokenizer.vocab_size)
    first_stage = tiny_vae() if vae == "kl" else patch_codec()
    unet = tiny_unet2d(in_channels=4 if vae == "kl" else first_stage.config.latent_channels)
    return {
        "vae": first_stage.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "unet": unet.eval(),
        "scheduler": ddim(),
    }


def tiny_zero_pipeline(encoder: str = "clip", vae: str = "kl") -> TextToVideoZeroPipeline:
    pipe = TextToVideoZeroPipeline(**tiny_sd_components(encoder, vae))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_sd(path, **defaults):
    """The tiny components saved as diffusers saves a StableDiffusionPipeline (no safety checker); `defaults`
    go to t2v_model.json's "defaults"."""
    import json

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **tiny_sd_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(path, safe_serialization=True)
    if defaults:
        (path / "t2v_model.json").write_text(json.dumps({"defaults": defaults}))
    return path

"""The real ModelScope text-to-video architecture, randomly initialised: one denoising step runs.

UNet3DConditionModel() defaults are ModelScope's UNet config; the text encoder is an OpenCLIP-H-sized
CLIPTextModel; the VAE is Stable Diffusion's AutoencoderKL. About 1.7B parameters, so it is marked slow.
"""

import pytest
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from t2v.pipelines.text_to_video import TextToVideoPipeline


@pytest.mark.slow
def test_modelscope_architecture_one_step():
    from tiny import tiny_clip_tokenizer

    torch.manual_seed(0)
    with torch.device("meta"):  # build the shapes without 7 GB of random init, then materialise small
        unet = UNet3DConditionModel()
    assert unet.config.block_out_channels == (320, 640, 1280, 1280) and unet.config.cross_attention_dim == 1024
    assert unet.config.attention_head_dim == 64
    n_params = sum(p.numel() for p in unet.parameters())
    assert 1.2e9 < n_params < 1.6e9  # ModelScope's UNet has ~1.4B parameters
    unet = unet.to_empty(device="cpu")
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.02)

    tokenizer = tiny_clip_tokenizer()
    tokenizer.model_max_length = 77
    text_encoder = CLIPTextModel(
        CLIPTextConfig(  # OpenCLIP ViT-H/14 text tower, as in ModelScope
            vocab_size=len(tokenizer),
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=23,
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=1024,
        )
    )
    vae = AutoencoderKL(  # Stable Diffusion's VAE config
        block_out_channels=(128, 256, 512, 512),
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=0.18215,
    )
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = TextToVideoPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_vae_slicing()
    assert pipe.vae_scale_factor == 8 and pipe.default_size == 256

    frames = pipe("Spiderman is surfing", num_frames=2, height=64, width=64, num_inference_steps=1, seed=0).frames
    assert frames.shape == (1, 2, 64, 64, 3)
    assert torch.isfinite(torch.from_numpy(frames)).all()

"""Stage "edit": an Instruct-Pix2Pix model (Brooks et al., 2023) on edit pairs of the Shapes world.

The recipe of the paper and of diffusers' `train_instruct_pix2pix.py`: the text-to-image UNet gets twice the
latent input channels, the new ones (the source frame's latents, the first stage's mode, unscaled) start at
zero so the model first behaves as the picture model; it learns to denoise the edited frame given the
source frame and the instruction. Conditioning dropout for both guidance scales: with p =
caption_dropout / 2, the instruction alone is dropped with probability p, the source alone with p, both with
p (the paper's 5% each at caption_dropout 0.1). Exported as a `StableDiffusionInstructPix2PixPipeline`
folder, which `VideoInstructPix2PixPipeline` and diffusers' own pipeline load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionInstructPix2PixPipeline

from t2v.models.loading import save_model

from .config import TrainConfig
from .first_stage import encode, load_first_stage
from .image import image_unet
from .loop import noise_schedule, run
from .unet import load_text_encoder, text_embedder


def dropout_masks(n: int, p: float, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep_text, keep_image) boolean masks of n samples: text alone dropped with probability p, image
    alone with p, both with p."""
    r = torch.rand(n, generator=generator)
    return ~(r < 2 * p), ~((r >= p) & (r < 3 * p))


def train_edit(config: TrainConfig) -> Path:
    if not config.vae_path or not Path(config.vae_path).is_dir():
        raise ValueError(f"vae_path must be a trained first-stage directory for stage 'edit', got {config.vae_path!r}")
    if config.data.kind != "shapes_edits":
        raise ValueError(f"stage 'edit' trains on data.kind 'shapes_edits', got {config.data.kind!r}")
    if config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {config.prediction_type!r}")
    vae = load_first_stage(config.vae_path).eval().requires_grad_(False)
    text_encoder, tokenizer = load_text_encoder(config.text_encoder)
    unet = image_unet(config, vae, text_encoder.config.hidden_size, extra_in=vae.config.latent_channels)
    embed = text_embedder(tokenizer, text_encoder, config.text_cache_size)
    noise_scheduler = DDPMScheduler(**noise_schedule(config.noise_shift), prediction_type=config.prediction_type)

    def loss_fn(model, batch):
        source, edited = batch["source"], batch["edited"]  # [B, k, 3, H, W]: k frames of each pair
        b, k = source.shape[:2]
        with torch.no_grad():
            vae.to(source.device)
            latents = encode(vae, edited.flatten(0, 1)) * vae.config.scaling_factor
            source_latents = encode(vae, source.flatten(0, 1), sample=False)
        keep_text, keep_image = dropout_masks(b * k, config.caption_dropout / 2)
        instructions = [c for c in batch["instruction"] for _ in range(k)]
        cond = embed([c if keep else "" for c, keep in zip(instructions, keep_text.tolist())], source.device)
        source_latents = source_latents * keep_image.to(source_latents)[:, None, None, None]
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b * k,), device=latents.device)
        noisy = torch.cat([noise_scheduler.add_noise(latents, noise, t), source_latents], 1)
        pred = model(noisy, t, encoder_hidden_states=cond).sample
        target = noise if config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def export(model):
        scheduler = DPMSolverMultistepScheduler(
            **noise_schedule(config.noise_shift),
            algorithm_type="dpmsolver++",
            prediction_type=config.prediction_type,
            steps_offset=1,
        )
        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=model.eval(), scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )  # fmt: skip
        path = Path(config.output_dir) / "model"
        return save_model(
            pipe, path, text_encoder_from=config.text_encoder, class_name="StableDiffusionInstructPix2PixPipeline"
        )

    return run(config, unet, loss_fn, export)

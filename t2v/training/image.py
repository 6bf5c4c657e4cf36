"""Stage "image": a text-to-image `UNet2DConditionModel` (Stable Diffusion layout) on latents of stills.

The model is what the zero-shot, control, edit and tuning pipelines start from. It shares the video
model's first stage and frozen text encoder, and it may start from a video UNet's spatial layers
(`init_from` a `UNet3DConditionModel`'s weights: its temporal layers are dropped, the rest loads into
the 2D layout as is). It is exported as a `StableDiffusionPipeline` folder, so diffusers' own
text-to-image, ControlNet and Instruct-Pix2Pix pipelines run it too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from t2v.models.loading import save_model

from .config import TrainConfig
from .first_stage import encode, load_first_stage
from .loop import noise_schedule, run
from .unet import load_text_encoder, text_embedder


TEMPORAL_PREFIXES = ("transformer_in.",)
TEMPORAL_PARTS = (".temp_convs.", ".temp_attentions.")


def spatial_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `UNet3DConditionModel`'s weights without its temporal layers: what a `UNet2DConditionModel` with
    the same blocks (2D types, `use_linear_projection=True`) loads; a 2D state dict comes back unchanged."""
    return {
        k: v
        for k, v in state.items()
        if not k.startswith(TEMPORAL_PREFIXES) and not any(p in k for p in TEMPORAL_PARTS)
    }


def widen_conv_in(state: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """A UNet's weights with `extra` zero input channels appended to conv_in (Instruct-Pix2Pix's
    initialisation: the widened model computes what the picture model did)."""
    w = state["conv_in.weight"]
    return {**state, "conv_in.weight": torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], 1)}


def image_unet(config: TrainConfig, vae, cross_attention_dim: int, extra_in: int = 0) -> UNet2DConditionModel:
    """The stage's UNet2DConditionModel on the VAE's latents, from `init_from` (a 2D or 3D UNet's weights;
    with `extra_in` more input channels, which start at zero when init_from has none)."""
    d = config.data
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if d.height % factor or d.width % factor:
        raise ValueError(f"data height/width must be multiples of the VAE factor {factor}, got {d.height}x{d.width}")
    channels = vae.config.latent_channels
    unet_config = {"use_linear_projection": True, **config.unet}
    unet = UNet2DConditionModel(
        sample_size=d.height // factor,
        in_channels=channels + extra_in,
        out_channels=channels,
        cross_attention_dim=cross_attention_dim,
        **unet_config,
    )
    if config.init_from:
        state = spatial_weights(load_file(config.init_from))
        if extra_in and state["conv_in.weight"].shape[1] == channels:
            state = widen_conv_in(state, extra_in)
        unet.load_state_dict(state)
    return unet


def train_image(config: TrainConfig) -> Path:
    if not config.vae_path or not Path(config.vae_path).is_dir():
        raise ValueError(
            f"vae_path must be a trained first-stage directory for stage 'image', got {config.vae_path!r}"
        )
    if config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {config.prediction_type!r}")
    vae = load_first_stage(config.vae_path).eval().requires_grad_(False)
    text_encoder, tokenizer = load_text_encoder(config.text_encoder)
    unet = image_unet(config, vae, text_encoder.config.hidden_size)
    embed = text_embedder(tokenizer, text_encoder, config.text_cache_size)
    noise_scheduler = DDPMScheduler(**noise_schedule(config.noise_shift), prediction_type=config.prediction_type)

    def loss_fn(model, batch):
        video = batch["video"]  # [B, k, 3, H, W]: k stills of each item, all with its caption
        b, k = video.shape[:2]
        with torch.no_grad():
            vae.to(video.device)
            latents = encode(vae, video.flatten(0, 1)) * vae.config.scaling_factor
        captions = [c for c in batch["caption"] for _ in range(k)]
        captions = ["" if torch.rand(()) < config.caption_dropout else c for c in captions]
        cond = embed(captions, video.device)
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (b * k,), device=latents.device)
        pred = model(noise_scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=cond).sample
        target = noise if config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def export(model):
        scheduler = DPMSolverMultistepScheduler(
            **noise_schedule(config.noise_shift),
            algorithm_type="dpmsolver++",
            prediction_type=config.prediction_type,
            steps_offset=1,  # Stable Diffusion's value (diffusers warns on 0 for StableDiffusionPipeline)
        )
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=model.eval(),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        path = Path(config.output_dir) / "model"
        return save_model(pipe, path, text_encoder_from=config.text_encoder, class_name="StableDiffusionPipeline")

    return run(config, unet, loss_fn, export)

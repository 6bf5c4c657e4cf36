"""Stage 2: the text-to-video UNet on first-stage latents of clips, with a frozen text encoder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet3DConditionModel
from diffusers.training_utils import compute_snr
from safetensors.torch import load_file

from t2v.models.loading import save_model
from t2v.models.temporal_position import add_frame_positions
from t2v.models.text_encoders import load_minilm
from t2v.pipelines.regions import latent_masks, regional_attention, token_biases
from t2v.pipelines.text_to_video import TextToVideoPipeline
from t2v.video_io import write_video
from t2v.world.layout import clip_regions

from .config import TrainConfig
from .first_stage import encode, foreground, load_first_stage
from .loop import noise_schedule, run


def load_text_encoder(name: str):
    if name != "minilm":
        raise ValueError(f"text_encoder must be 'minilm' (all-MiniLM-L6-v2), got {name!r}")
    return load_minilm()


def clip_mse(
    pred: torch.Tensor, target: torch.Tensor, fg: torch.Tensor | None = None, fg_weight: float = 0.0
) -> torch.Tensor:
    """Per-clip squared error of [B, C, F, h, w] tensors; latent pixels marked in fg [B, 1, F, h, w] weigh
    1 + fg_weight, the others 1, normalised so each clip's weights average to 1 (fg None: the plain mean)."""
    err = (pred.float() - target.float()) ** 2
    if fg is None or not fg_weight:
        return err.mean(dim=(1, 2, 3, 4))
    weight = 1 + fg_weight * fg.float()
    return (err * weight).sum(dim=(1, 2, 3, 4)) / (weight.sum(dim=(1, 2, 3, 4)) * err.shape[1])


def sample_timesteps(n: int, num_train_timesteps: int, power: float = 0.0, device=None) -> torch.Tensor:
    """n training timesteps in [0, num_train_timesteps) with density ~ t^power (0: uniform)."""
    if not power:  # torch.randint, as the recorded runs (experiments/) drew: their commands still reproduce them
        return torch.randint(0, num_train_timesteps, (n,), device=device)
    u = torch.rand(n, device=device) ** (1 / (1 + power))
    return (u * num_train_timesteps).long().clamp(max=num_train_timesteps - 1)


def text_embedder(tokenizer, text_encoder, max_cached: int):
    """A function captions -> text embeddings [B, T, D], cached: the frozen encoder sees each caption once."""
    cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(captions: list[str], device) -> torch.Tensor:
        """Text embeddings, cached: the frozen encoder sees each caption once."""
        if len(cache) > max_cached:  # bounded: start again, keeping none (all are recomputed below)
            cache.clear()
        missing = [c for c in dict.fromkeys(captions) if c not in cache]
        if missing:
            tokens = tokenizer(
                missing,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            encoder = text_encoder.to(device)
            hidden = encoder(tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device))[0]
            cache.update(zip(missing, hidden))
        return torch.stack([cache[c] for c in captions])

    return embed


def layout_state(tokenizer, batch, captions, latent_hw):
    """Per clip: token biases [B, 2, T] and band masks [B, 2, F, h, w]; clips with one object or a
    dropped caption get one region over the whole frame that blocks nothing (the plain UNet)."""
    video = batch["video"]
    n, length = video.shape[1], tokenizer.model_max_length
    biases, masks = [], []
    for caption, scene, clip in zip(captions, batch["scene"], video):
        regions = clip_regions(caption, json.loads(scene), clip.cpu()) if caption else None
        if regions is None:
            biases.append(torch.zeros(2, length))
            masks.append(torch.stack([torch.ones(n, *latent_hw), torch.zeros(n, *latent_hw)]))
        else:
            biases.append(token_biases(tokenizer, caption, regions, length))
            masks.append(latent_masks(regions, n, tuple(latent_hw)))
    return torch.stack(biases).to(video.device), torch.stack(masks).to(video.device)


def train_unet(config: TrainConfig) -> Path:
    if not config.vae_path or not Path(config.vae_path).is_dir():
        raise ValueError(
            f"vae_path must be a trained VAE directory (stage 'vae' writes OUTPUT_DIR/vae), got {config.vae_path!r}"
        )
    d = config.data
    vae = load_first_stage(config.vae_path).eval().requires_grad_(False)
    text_encoder, tokenizer = load_text_encoder(config.text_encoder)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if d.height % factor or d.width % factor:
        raise ValueError(f"data height/width must be multiples of the VAE factor {factor}, got {d.height}x{d.width}")
    unet = UNet3DConditionModel(
        sample_size=d.height // factor,
        in_channels=vae.config.latent_channels,
        out_channels=vae.config.latent_channels,
        cross_attention_dim=text_encoder.config.hidden_size,
        **config.unet,
    )
    if config.layout_regions and d.kind != "shapes":
        raise ValueError(
            f"layout_regions needs the Shapes world's layouts (data kind 'shapes'), got data kind {d.kind!r}"
        )
    if config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {config.prediction_type!r}")
    if config.init_from:  # start from earlier weights (e.g. another objective's run)
        unet.load_state_dict(load_file(config.init_from))
    if config.temporal_position:
        add_frame_positions(unet, config.temporal_position)
    embed = text_embedder(tokenizer, text_encoder, config.text_cache_size)
    noise_scheduler = DDPMScheduler(**noise_schedule(config.noise_shift), prediction_type=config.prediction_type)

    def loss_fn(model, batch):
        video = batch["video"]  # [B, F, 3, H, W]
        b, n = video.shape[:2]
        with torch.no_grad():
            vae.to(video.device)
            latents = encode(vae, video.flatten(0, 1)) * vae.config.scaling_factor
            latents = latents.reshape(b, n, *latents.shape[1:]).permute(0, 2, 1, 3, 4)  # [B, C, F, h, w]
        captions = ["" if torch.rand(()) < config.caption_dropout else c for c in batch["caption"]]
        cond = embed(captions, video.device)
        layout = layout_state(tokenizer, batch, captions, latents.shape[-2:]) if config.layout_regions else None
        noise = torch.randn_like(latents)
        if config.noise_offset:
            noise += config.noise_offset * torch.randn(b, latents.shape[1], 1, 1, 1, device=latents.device)
        t = sample_timesteps(b, noise_scheduler.config.num_train_timesteps, config.timestep_power, latents.device)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        if layout is None:
            pred = model(noisy, t, encoder_hidden_states=cond).sample
        else:
            with regional_attention(model, *layout, cfg=False):
                pred = model(noisy, t, encoder_hidden_states=cond).sample
        target = noise if config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
        fg = None
        if config.fg_weight:  # the latent pixels that hold an object: [B, 1, F, h, w]
            fg = foreground(video.flatten(0, 1), video.shape[-1] // latents.shape[-1])
            fg = fg.reshape(b, n, 1, *fg.shape[-2:]).permute(0, 2, 1, 3, 4)
        per_sample = clip_mse(pred, target, fg, config.fg_weight)
        if config.snr_gamma:  # min-SNR-gamma weighting, for epsilon or v targets
            snr = compute_snr(noise_scheduler, t)
            divisor = snr if config.prediction_type == "epsilon" else snr + 1
            per_sample = per_sample * torch.clamp(snr, max=config.snr_gamma) / divisor
        return per_sample.mean()

    def pipeline_for(model):
        scheduler = DPMSolverMultistepScheduler(
            **noise_schedule(config.noise_shift), algorithm_type="dpmsolver++", prediction_type=config.prediction_type
        )
        pipe = TextToVideoPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=model, scheduler=scheduler
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def sample(model, path: Path):
        was_training = model.training
        model.eval()
        pipe = pipeline_for(model)
        prompt = "a red circle moving right on a black background"
        frames = pipe(prompt, num_frames=d.num_frames, height=d.height, width=d.width, seed=0).frames[0]
        model.train(was_training)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, (frames * 255).round().astype("uint8"), overwrite=True)

    def export(model):
        path = Path(config.output_dir) / "model"
        meta = {"temporal_position": config.temporal_position} if config.temporal_position else {}
        save_model(pipeline_for(model.eval()), path, text_encoder_from=config.text_encoder, meta=meta)
        return path

    return run(config, unet, loss_fn, export, sample)

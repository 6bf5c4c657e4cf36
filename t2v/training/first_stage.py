"""Stage 1: the first stage (VAE) on single frames, and the optional decoder refiner (stage 3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderTiny

from t2v.models.patch_vae import PatchAutoencoder

from .config import TrainConfig
from .data import make_dataset
from .loop import run


FIRST_STAGES = {"kl": AutoencoderKL, "tiny": AutoencoderTiny, "patch": PatchAutoencoder}


def make_first_stage(config: TrainConfig):
    """AutoencoderKL (Stable Diffusion / ModelScope layout) or AutoencoderTiny (TAESD layout).

    The embedded model uses PatchAutoencoder (t2v.models.patch_vae: a PCA fit, see why there).
    """
    if config.vae_type not in FIRST_STAGES:
        raise ValueError(f"vae_type must be one of {', '.join(FIRST_STAGES)}, got {config.vae_type!r}")
    if config.vae_type == "tiny":
        return AutoencoderTiny(in_channels=3, out_channels=3, **config.vae)
    if config.vae_type == "patch":
        return PatchAutoencoder(in_channels=3, **config.vae)
    n_blocks = len(config.vae["block_out_channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        sample_size=config.data.height,
        down_block_types=["DownEncoderBlock2D"] * n_blocks,
        up_block_types=["UpDecoderBlock2D"] * n_blocks,
        **config.vae,
    )


def load_first_stage(path: str | Path):
    name = AutoencoderKL.load_config(path).get("_class_name")
    classes = {cls.__name__: cls for cls in FIRST_STAGES.values()}
    if name not in classes:
        raise ValueError(f"{path} holds a {name}, expected one of {', '.join(classes)}")
    return classes[name].from_pretrained(path, use_safetensors=True)


def encode(vae, frames: torch.Tensor, sample: bool = True) -> torch.Tensor:
    """Unscaled latents of frames [N, 3, H, W] in [-1, 1]."""
    out = vae.encode(frames)
    if hasattr(out, "latents"):  # AutoencoderTiny: deterministic
        return out.latents
    return out.latent_dist.sample() if sample else out.latent_dist.mode()


def fit_patch_vae(config: TrainConfig, vae: PatchAutoencoder) -> Path:
    """Closed-form first stage: PCA on patches of `config.pca_frames` frames (random frames of clips)."""
    dataset = make_dataset(config.data)
    g = torch.Generator().manual_seed(config.seed)
    clips = torch.randint(0, len(dataset), (math.ceil(config.pca_frames / 4),), generator=g).tolist()
    frames = torch.cat(
        [dataset[i]["video"][torch.randint(0, config.data.num_frames, (4,), generator=g)] for i in clips]
    )
    stats = vae.fit(frames[: config.pca_frames], min_std=config.pca_min_std)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    log = {"pca_frames": config.pca_frames, "pca_min_std": config.pca_min_std, **stats}
    (out / "vae-train-log.json").write_text(json.dumps(log, indent=1))
    print(
        f"fitted {vae.config.latent_channels} components on {stats['patches']} patches: "
        f"{100 * stats['variance_kept']:.2f}% variance, {stats['psnr_db']:.1f} dB PSNR"
    )
    return out / "vae"


def random_frames(video: torch.Tensor, per_clip: int) -> torch.Tensor:
    """`per_clip` random frames of each clip of video [B, F, 3, H, W], as one batch of images."""
    pick = torch.randint(0, video.shape[1], (video.shape[0], min(per_clip, video.shape[1])))
    return torch.stack([v[i] for v, i in zip(video, pick)]).flatten(0, 1)


def train_vae(config: TrainConfig) -> Path:
    vae = make_first_stage(config)
    if isinstance(vae, PatchAutoencoder):
        return fit_patch_vae(config, vae)

    def loss_fn(model, batch):
        video = batch["video"]  # [B, F, 3, H, W]: train on a few random frames of each clip
        frames = random_frames(video, config.vae_frames_per_clip)
        kl = 0.0
        if config.vae_type == "kl":
            posterior = model.encode(frames).latent_dist
            latents = posterior.sample() if config.vae_sample_posterior else posterior.mode()
            kl = config.kl_weight * posterior.kl().mean()
        else:
            latents = model.encode(frames).latents
        recon = model.decode(latents).sample
        weight = 1.0
        if config.fg_weight:  # small objects on flat backgrounds: weigh pixels unlike the corner (background) more
            weight = 1 + config.fg_weight * foreground(frames).float()
        err = recon - frames
        return (weight * (err.abs() + err**2)).mean() + kl

    def export(model):
        path = Path(config.output_dir) / "vae"
        # unit-variance latents for the diffusion stage
        model.register_to_config(scaling_factor=latent_scale(model, config))
        model.save_pretrained(path, safe_serialization=True)
        return path

    return run(config, vae, loss_fn, export)


# ---------------------------------------------------------------- optional: the decoder's refiner
def train_decoder(config: TrainConfig) -> Path:
    """Train a refiner for the PatchAutoencoder at vae_path (encoder and linear decoder frozen): noisy
    latents of real frames -> the real frames. Writes OUTPUT_DIR/vae, a drop-in for the model's vae/."""
    if not config.vae_path or not Path(config.vae_path).is_dir():
        raise ValueError(f"vae_path must be a PatchAutoencoder directory for stage 'decoder', got {config.vae_path!r}")
    base = load_first_stage(config.vae_path)
    if not isinstance(base, PatchAutoencoder):
        raise ValueError(
            f"stage 'decoder' refines a PatchAutoencoder; {config.vae_path} holds a {type(base).__name__}"
        )
    if config.refiner_channels < 1 or config.refiner_noise < 0:
        raise ValueError(
            "refiner_channels must be >= 1 and refiner_noise >= 0, "
            f"got {config.refiner_channels}, {config.refiner_noise}"
        )
    rebuilt = ("block_out_channels", "refiner_channels", "refiner_layers")
    keep = {k: v for k, v in base.config.items() if not k.startswith("_") and k not in rebuilt}
    vae = PatchAutoencoder(**keep, refiner_channels=config.refiner_channels, refiner_layers=config.refiner_layers)
    vae.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("refiner.")}, strict=False)
    vae.encoder.requires_grad_(False)
    vae.decoder.requires_grad_(False)

    def loss_fn(model, batch):
        video = batch["video"]  # [B, F, 3, H, W]: a few random frames of each clip
        frames = random_frames(video, config.vae_frames_per_clip)
        with torch.no_grad():
            z = model.encode(frames).latents
            sigma = torch.rand(len(z), 1, 1, 1, device=z.device) * config.refiner_noise
            z = z + sigma * (torch.randn_like(z) + 0.3 * torch.randn(*z.shape[:2], 1, 1, device=z.device))
        err = model.decode(z).sample - frames
        return (err.abs() + err**2).mean()

    def export(model):
        path = Path(config.output_dir) / "vae"
        model.save_pretrained(path, safe_serialization=True)
        return path

    return run(config, vae, loss_fn, export)


@torch.no_grad()
def latent_scale(vae, config: TrainConfig, n: int = 64) -> float:
    dataset = make_dataset(config.data)
    frames = torch.stack([dataset[i]["video"] for i in range(min(n, len(dataset)))]).flatten(0, 1)
    return float(1 / encode(vae, frames.to(vae.device)).std())


def foreground(frames: torch.Tensor, factor: int = 1) -> torch.Tensor:
    """[N, 1, H/factor, W/factor] bool: where a frame [N, 3, H, W] differs from its top-left pixel (the
    Shapes world's flat background) by more than 0.05 anywhere in a factor x factor cell."""
    fg = (frames - frames[..., :1, :1]).abs().amax(dim=1, keepdim=True) > 0.05
    return F.max_pool2d(fg.float(), factor).bool() if factor > 1 else fg

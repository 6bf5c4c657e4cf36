"""Train t2v's models with Accelerate: the same script on one CPU process or many GPUs.

    t2v train configs/shapes-vae.yaml                               # one process
    accelerate launch --num_processes 2 -m t2v.training.train CONFIG  # several

Two stages, as in latent video diffusion, and an optional third:
  1. "vae": the first stage on single frames: an `AutoencoderKL` or `AutoencoderTiny` (diffusers layout;
     L1 + MSE, plus a small KL term for the KL one), or a `PatchAutoencoder` fitted by PCA in closed form.
  2. "unet": a `UNet3DConditionModel` on VAE latents of clips (epsilon or v prediction), a frozen text
     encoder, captions dropped 10% of the time for classifier-free guidance, min-SNR loss weighting, EMA.
  3. "decoder": a refiner for a `PatchAutoencoder`'s decoder, trained on noisy latents of real frames.

Checkpoints (`output_dir/checkpoint/`, safetensors + JSON, never pickle) are written every
`checkpoint_every` steps and picked up again by the next run with the same output_dir. The final
model is written in diffusers layout: `output_dir/vae/` or `output_dir/model/` (a whole pipeline).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, AutoencoderTiny, DDPMScheduler, DPMSolverMultistepScheduler, UNet3DConditionModel
from diffusers.training_utils import EMAModel, compute_snr
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from t2v.models.patch_vae import PatchAutoencoder
from t2v.models.temporal_position import add_frame_positions

from .config import TrainConfig, config_to_dict, load_config
from .data import collate, make_dataset


# The noise schedule of ModelScope / Stable Diffusion, so that their solvers and settings carry over.
NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
}


def noise_schedule(shift: float = 0.0) -> dict:
    """Scheduler arguments: ModelScope's scaled-linear schedule, or with shift > 0 its log-SNR lowered by
    shift * (t/T)^2, given as `trained_betas` (so any diffusers scheduler's `from_config` reproduces it).

    A 16-frame clip has many more latent values than an image: at t=999 of the plain schedule the noisy
    input still shows where the objects are and which way they move, so the model learns to read the
    layout from the noise and the prompt cannot steer it. The shift hides the clip in the noisy steps
    (the clean end of the schedule is kept: the shift is 0 at t=0).
    """
    if not shift:
        return dict(NOISE_SCHEDULE)
    if shift < 0:
        raise ValueError(f"noise_shift must be >= 0, got {shift}")
    base = DDPMScheduler(**NOISE_SCHEDULE).alphas_cumprod.double()
    t = torch.linspace(0, 1, len(base), dtype=torch.float64)
    ac = torch.sigmoid(torch.log(base / (1 - base)) - shift * t**2)
    betas = 1 - ac / torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    return {"num_train_timesteps": len(base), "trained_betas": betas.tolist()}


def mixed_precision(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return name


# ---------------------------------------------------------------- checkpoints (no pickle)
def save_checkpoint(path: Path, model, ema: EMAModel | None, optimizer, step: int, config: TrainConfig) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    if ema is not None:
        save_file({f"{i}": p.contiguous() for i, p in enumerate(ema.shadow_params)}, tmp / "ema.safetensors")
    tensors, meta = {}, {"param_groups": optimizer.state_dict()["param_groups"], "state": {}}
    for idx, state in optimizer.state_dict()["state"].items():
        meta["state"][str(idx)] = []
        for key, value in state.items():
            tensors[f"{idx}.{key}"] = value.contiguous() if torch.is_tensor(value) else torch.tensor(value)
            meta["state"][str(idx)].append(key)
    save_file(tensors, tmp / "optimizer.safetensors")
    ema_steps = ema.optimization_step if ema is not None else 0
    state = {"step": step, "ema_steps": ema_steps, "optimizer": meta, "config": config_to_dict(config)}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_checkpoint(path: Path, model, ema: EMAModel | None, optimizer) -> int:
    state = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"))
    if ema is not None and (path / "ema.safetensors").is_file():
        shadow = load_file(path / "ema.safetensors")
        ema.shadow_params = [shadow[str(i)] for i in range(len(shadow))]
        ema.optimization_step = state["ema_steps"]
    tensors = load_file(path / "optimizer.safetensors")
    meta = state["optimizer"]
    optimizer.load_state_dict({
        "param_groups": meta["param_groups"],
        "state": {int(i): {k: tensors[f"{i}.{k}"] for k in keys} for i, keys in meta["state"].items()},
    })
    return state["step"]


# ---------------------------------------------------------------- the loop shared by every stage
def run(config: TrainConfig, model: torch.nn.Module, loss_fn, export_fn, sample_fn=None) -> Path:
    """Optimise `model` with `loss_fn(model, batch) -> loss` for config.steps steps; checkpoints, EMA, export."""
    accelerator = Accelerator(mixed_precision=mixed_precision(config.mixed_precision))
    out = Path(config.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{config.stage}-config.json").write_text(json.dumps(config_to_dict(config), indent=1))

    params = trainable(model)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = None
    if config.ema_decay > 0:
        ema = EMAModel(params, decay=config.ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)

    step = 0
    ckpt = out / "checkpoint"
    saved = json.loads((ckpt / "state.json").read_text()) if (ckpt / "state.json").is_file() else None
    if saved is not None and saved["config"]["stage"] == config.stage:
        step = load_checkpoint(ckpt, model, ema, optimizer)
        accelerator.print(f"resumed from {ckpt} at step {step}")
    if step >= config.steps:
        accelerator.print(f"already trained for {step} steps")
    warmup = max(1, config.warmup_steps)

    def lr_at(s):  # linear warm-up, then cosine decay to 0 at config.steps
        return min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / config.steps)))

    first = step  # the LR schedule continues where a resumed run left off
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s + first))

    # Fresh shuffles after a resume: the data is drawn, not replayed (a world made on the fly has no epochs).
    set_seed(config.seed + step)
    dataset = make_dataset(config.data)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(config.seed + step))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if ema is not None:
        ema.to(accelerator.device)

    bar = tqdm(
        total=config.steps,
        initial=step,
        desc=config.stage,
        disable=not accelerator.is_main_process,
        file=sys.stdout,
        mininterval=5,
    )
    start, seen, losses = time.time(), 0, []
    data = iter(loader)
    while step < config.steps:
        try:
            batch = next(data)
        except StopIteration:
            data = iter(loader)
            batch = next(data)
        with accelerator.autocast():
            loss = loss_fn(model, batch)
        accelerator.backward(loss)
        if config.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(trainable(accelerator.unwrap_model(model)))
        step += 1
        seen += config.batch_size * accelerator.num_processes
        losses.append(accelerator.gather(loss.detach()[None]).mean().item())
        if step % config.log_every == 0 or step == config.steps:
            rate = seen / (time.time() - start)
            bar.set_postfix(
                loss=f"{sum(losses) / len(losses):.4f}",
                samples_per_s=f"{rate:.1f}",
                lr=f"{scheduler.get_last_lr()[0]:.1e}",
            )
            losses = []
        bar.update(1)
        stop = config.max_minutes and (time.time() - start) / 60 > config.max_minutes
        if step % config.checkpoint_every == 0 or step == config.steps or stop:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(ckpt, accelerator.unwrap_model(model), ema, optimizer, step, config)
        sample_now = sample_fn is not None and config.sample_every and step % config.sample_every == 0
        if sample_now and accelerator.is_main_process:
            with _ema_weights(accelerator.unwrap_model(model), ema):
                sample_fn(accelerator.unwrap_model(model), out / "samples" / f"step{step:06d}.gif")
        if stop:
            accelerator.print(f"stopping after {config.max_minutes} minutes at step {step}")
            break
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        with _ema_weights(final, ema):
            path = export_fn(final)
        minutes = (time.time() - start) / 60
        log = {"steps": step, "minutes_this_run": round(minutes, 2)}
        (out / f"{config.stage}-train-log.json").write_text(json.dumps(log))
        accelerator.print(f"wrote {path}")
        return path
    return out


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters a stage trains (and keeps an EMA of); a stage may freeze the rest."""
    return [p for p in model.parameters() if p.requires_grad]


class _ema_weights:
    """Swap the EMA weights into the model inside a `with` block."""

    def __init__(self, model, ema):
        self.model, self.ema = model, ema

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(trainable(self.model))
            self.ema.copy_to(trainable(self.model))

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(trainable(self.model))


# ---------------------------------------------------------------- stage 1: the VAE
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


# ---------------------------------------------------------------- stage 2: the text-to-video UNet
def load_text_encoder(name: str):
    if name != "minilm":
        raise ValueError(f"text_encoder must be 'minilm' (all-MiniLM-L6-v2), got {name!r}")
    from t2v.models.text_encoders import load_minilm

    return load_minilm()


def foreground(frames: torch.Tensor, factor: int = 1) -> torch.Tensor:
    """[N, 1, H/factor, W/factor] bool: where a frame [N, 3, H, W] differs from its top-left pixel (the
    Shapes world's flat background) by more than 0.05 anywhere in a factor x factor cell."""
    fg = (frames - frames[..., :1, :1]).abs().amax(dim=1, keepdim=True) > 0.05
    return F.max_pool2d(fg.float(), factor).bool() if factor > 1 else fg


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


def train_unet(config: TrainConfig) -> Path:
    from t2v.pipelines.regions import latent_masks, regional_attention, token_biases
    from t2v.world.layout import clip_regions

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
    noise_scheduler = DDPMScheduler(**noise_schedule(config.noise_shift), prediction_type=config.prediction_type)
    cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(captions: list[str], device) -> torch.Tensor:
        """Text embeddings, cached: the frozen encoder sees each caption once."""
        if len(cache) > config.text_cache_size:  # bounded: start again, keeping none (all are recomputed below)
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

    def layout_state(batch, captions, latent_hw):
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

    def loss_fn(model, batch):
        video = batch["video"]  # [B, F, 3, H, W]
        b, n = video.shape[:2]
        with torch.no_grad():
            vae.to(video.device)
            latents = encode(vae, video.flatten(0, 1)) * vae.config.scaling_factor
            latents = latents.reshape(b, n, *latents.shape[1:]).permute(0, 2, 1, 3, 4)  # [B, C, F, h, w]
        captions = ["" if torch.rand(()) < config.caption_dropout else c for c in batch["caption"]]
        cond = embed(captions, video.device)
        layout = layout_state(batch, captions, latents.shape[-2:]) if config.layout_regions else None
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
        from t2v.pipelines.text_to_video import TextToVideoPipeline

        scheduler = DPMSolverMultistepScheduler(
            **noise_schedule(config.noise_shift), algorithm_type="dpmsolver++", prediction_type=config.prediction_type
        )
        pipe = TextToVideoPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=model, scheduler=scheduler
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def sample(model, path: Path):
        from t2v.video_io import write_video

        was_training = model.training
        model.eval()
        pipe = pipeline_for(model)
        prompt = "a red circle moving right on a black background"
        frames = pipe(prompt, num_frames=d.num_frames, height=d.height, width=d.width, seed=0).frames[0]
        model.train(was_training)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, (frames * 255).round().astype("uint8"), overwrite=True)

    def export(model):
        from t2v.models.loading import save_model

        path = Path(config.output_dir) / "model"
        meta = {"temporal_position": config.temporal_position} if config.temporal_position else {}
        save_model(pipeline_for(model.eval()), path, text_encoder_from=config.text_encoder, meta=meta)
        return path

    return run(config, unet, loss_fn, export, sample)


def parse_overrides(args: list[str]) -> dict:
    """`key=value` pairs; values are JSON where they parse as JSON (numbers, lists, true), else strings."""
    overrides = {}
    for arg in args:
        if "=" not in arg:
            raise ValueError(f"overrides are key=value, got {arg!r}")
        key, value = arg.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def train(config: TrainConfig) -> Path:
    set_seed(config.seed)
    return {"vae": train_vae, "unet": train_unet, "decoder": train_decoder}[config.stage](config)


if __name__ == "__main__":  # accelerate launch -m t2v.training.train CONFIG [key=value ...]
    train(load_config(sys.argv[1], parse_overrides(sys.argv[2:])))

"""One-shot video tuning (Tune-A-Video): a video UNet fitted to one captioned clip.

Start from a picture model inflated to the video layout (t2v.models.inflate.inflate_unet, with
sparse-causal attention switched on) or from a video model; `tune` fits it to one clip with the
ordinary noise-prediction loss, training only the query projections of the spatial self- and
cross-attention and the temporal attention layers (see `tuned_parameter_names`); `save_tuned` writes
the result as a model folder that `TextToVideoPipeline` loads, with the clip's DDIM inversion
(t2v.pipelines.inversion) to start edits from.

Example:
    >>> unet = sparse_causal_attention(inflate_unet(sd.unet))
    >>> unet = tune(unet, sd.vae, sd.text_encoder, sd.tokenizer, sd.scheduler, video, "a man is skiing")
    >>> save_tuned("tuned-skier", unet, sd.vae, sd.text_encoder, sd.tokenizer, ddim, inversion_latents=...)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from accelerate import Accelerator
from diffusers import DDPMScheduler, UNet3DConditionModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from t2v.models.inflate import has_sparse_causal_attention, is_temporal
from t2v.models.loading import save_model
from t2v.pipelines.inversion import INVERSION_FILE, video_posterior
from t2v.pipelines.prompts import encode_prompt
from t2v.pipelines.text_to_video import TextToVideoPipeline


TUNED_SPATIAL = (".attn1.to_q.", ".attn2.to_q.")  # + every parameter of the temporal transformers
TRAINED = "spatial attn1.to_q and attn2.to_q; temporal transformers (temp_attentions, transformer_in)"
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
MIXED_PRECISION = ("no", "fp16", "bf16")  # accelerate's: autocast, float32 weights
TUNING_ATTRIBUTE = "t2v_tuning"  # the UNet attribute with the record of its tuning (save_tuned writes it)
CHECKPOINT = "checkpoint"
TUNE_STEPS = 100  # the defaults, chosen on the embedded t2v-shapes-image model (docs/tune.md)
TUNE_LR = 1e-3


def tuned_parameter_names(unet: UNet3DConditionModel) -> list[str]:
    """The parameters `tune` trains: the query projections of the per-frame self- and cross-attention
    (`attn1.to_q`, `attn2.to_q`) and all of the temporal transformers (`temp_attentions`, `transformer_in`).
    The temporal convolutions stay frozen (identity in an inflated model, as Tune-A-Video's 2D convs)."""
    names = []
    for name, _ in unet.named_parameters():
        spatial_query = ".attentions." in name and any(p in name for p in TUNED_SPATIAL)
        if spatial_query or (is_temporal(name) and ".temp_convs." not in name):
            names.append(name)
    return names


def check_clip(video, caption, vae, num_frames: int | None = None) -> None:
    """ValueError naming what is wrong with a clip [F, 3, H, W] in [-1, 1] and its caption."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"video must be a tensor [F, 3, H, W], got {getattr(video, 'shape', type(video).__name__)}")
    frames, _, height, width = video.shape
    if frames < 2:
        raise ValueError(f"video must have at least 2 frames to tune on, got {frames}")
    if num_frames is not None and frames != num_frames:
        raise ValueError(f"video has {frames} frames but num_frames={num_frames} was asked for")
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if height % factor or width % factor:
        raise ValueError(f"frame size {height}x{width} must be a multiple of the VAE factor {factor}")
    low, high = video.min().item(), video.max().item()
    if low < -1.001 or high > 1.001:
        raise ValueError(f"video values must be in [-1, 1], got [{low:.3g}, {high:.3g}] (frames / 127.5 - 1)")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")


def _check_settings(unet, vae, steps, lr, checkpoint_every, mixed_precision, prediction_type) -> None:
    if not isinstance(unet, UNet3DConditionModel):
        raise ValueError(f"tune needs a UNet3DConditionModel (see inflate_unet), got {type(unet).__name__}")
    channels = vae.config.latent_channels
    if channels != unet.config.in_channels:
        raise ValueError(f"the VAE's {channels} latent channels do not match the UNet's {unet.config.in_channels}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"the scheduler's prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def tune(
    unet: UNet3DConditionModel,
    vae,
    text_encoder,
    tokenizer,
    scheduler,
    video: torch.Tensor,
    caption: str,
    *,
    steps: int = TUNE_STEPS,
    lr: float = TUNE_LR,
    seed: int = 0,
    output_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    mixed_precision: str = "no",
    gradient_checkpointing: bool = False,
    progress: bool = True,
    num_frames: int | None = None,
    weight_decay: float = 1e-2,
    max_grad_norm: float = 1.0,
    device: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> UNet3DConditionModel:
    """Fit `unet` to one clip, in place, and return it (eval mode, frozen).

    What trains: `tuned_parameter_names(unet)`, i.e. the query projections of the per-frame self- and
    cross-attention and the temporal transformers; everything else (the rest of the UNet, the VAE, the
    text encoder, the temporal convolutions) stays as it is. The loss is the standard noise-prediction
    loss on the clip's latents (a fresh posterior sample, noise and timestep each step, the scheduler's
    prediction type), AdamW at a constant `lr` (Tune-A-Video: 3e-5, 500 steps, batch 1), gradients
    clipped at `max_grad_norm`. The UNet's attention processors are used as they are: switch
    sparse-causal attention on first for Tune-A-Video's recipe.

    video: frames [F, 3, H, W] in [-1, 1], F >= 2 (and F == num_frames if given), H and W multiples of
    the VAE's factor. scheduler: any scheduler of the model (its config gives the noise schedule and
    prediction type). With `output_dir`, a checkpoint (safetensors + JSON) is written every
    `checkpoint_every` steps and at the end, and a run on the same clip and caption resumes from it.
    Each step draws its randomness from `seed` and the step number, so a resumed run matches an
    uninterrupted one. device: "cpu" keeps it on the CPU; else Accelerate's choice (a GPU where there is
    one). on_step(step, steps) is called after each step (raise from it to stop; the last checkpoint stays).
    """
    noise_scheduler = DDPMScheduler.from_config(scheduler.config)
    prediction_type = noise_scheduler.config.prediction_type
    check_clip(video, caption, vae, num_frames)
    _check_settings(unet, vae, steps, lr, checkpoint_every, mixed_precision, prediction_type)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=device == "cpu")
    device = accelerator.device
    mean, std, embeds = _encode_clip(vae, text_encoder, tokenizer, video, caption, device)

    names = tuned_parameter_names(unet)
    unet.to(device).requires_grad_(False)
    params = [p.requires_grad_(True) for n, p in unet.named_parameters() if n in names]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    clip = _fingerprint(video, caption)
    ckpt = Path(output_dir) / CHECKPOINT if output_dir is not None else None
    step = _load_checkpoint(ckpt, unet, optimizer, names, clip) if ckpt and (ckpt / "state.json").is_file() else 0
    if step and progress:
        accelerator.print(f"resumed from {ckpt} at step {step}")

    model, optimizer = accelerator.prepare(unet, optimizer)
    model.train()
    bar = tqdm(total=steps, initial=min(step, steps), desc="tune", disable=not progress, file=sys.stdout)
    with _checkpointed(unet) if gradient_checkpointing else contextlib.nullcontext():
        while step < steps:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + step)  # resumable randomness
            with accelerator.autocast():
                loss = _loss(model, noise_scheduler, mean, std, embeds, generator)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update(1)
            if ckpt is not None and (step % checkpoint_every == 0 or step == steps) and accelerator.is_main_process:
                _save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, names, step, clip)
            if on_step is not None:
                on_step(step, steps)
    bar.close()

    unet = accelerator.unwrap_model(model).eval().requires_grad_(False)
    record = {"method": "tune-a-video", "caption": caption, "frames": int(video.shape[0])}
    record.update(height=int(video.shape[2]), width=int(video.shape[3]), steps=step, lr=lr, seed=seed)
    record.update(weight_decay=weight_decay, max_grad_norm=max_grad_norm, mixed_precision=mixed_precision)
    record.update(trained=TRAINED, trained_parameters=sum(p.numel() for p in params))
    record.update(sparse_causal_attention=has_sparse_causal_attention(unet), prediction_type=prediction_type)
    setattr(unet, TUNING_ATTRIBUTE, record)
    return unet


@torch.no_grad()
def _encode_clip(vae, text_encoder, tokenizer, video, caption, device) -> tuple[torch.Tensor, ...]:
    """The clip's latent posterior (mean, std) and the caption's embeddings, in float32 on `device`. They are
    computed once (the VAE and text encoder are frozen), and both go back to where they were."""
    places = [(part, part.device) for part in (vae, text_encoder)]
    mean, std = video_posterior(vae.to(device), video)
    embeds, _ = encode_prompt(SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder.to(device)), caption,
                              device, 1, False)  # fmt: skip
    for part, place in places:
        part.to(place)
    return mean.float(), std.float(), embeds.float()


def _loss(model, noise_scheduler, mean, std, embeds, generator) -> torch.Tensor:
    """Noise-prediction loss on one posterior sample of the clip's latents [1, C, F, h, w]."""
    latents = mean + std * torch.randn(mean.shape, generator=generator).to(mean)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,), generator=generator).to(latents.device)
    pred = model(noise_scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=embeds).sample
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = latents
    return F.mse_loss(pred.float(), target.float())


@contextlib.contextmanager
def _checkpointed(unet):
    """Gradient checkpointing of the UNet's down, mid and up blocks (diffusers' UNet3DConditionModel has none)."""
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    for block in blocks:
        block.forward = functools.partial(torch.utils.checkpoint.checkpoint, block.forward, use_reentrant=False)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward  # back to the class's forward


# ---------------------------------------------------------------- checkpoints (no pickle)
def _fingerprint(video: torch.Tensor, caption: str) -> dict:
    digest = hashlib.sha256(video.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
    return {"caption": caption, "shape": list(video.shape), "sha256": digest}


def _save_checkpoint(path: Path, unet, optimizer, names: list[str], step: int, clip: dict) -> None:
    """The trained parameters, AdamW's state and the step, written next to `path` and then moved in."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = dict(unet.named_parameters())
    save_file({n: state[n].detach().contiguous() for n in names}, tmp / "tuned.safetensors")
    opt = optimizer.state_dict()
    tensors, keys = {}, {}
    for idx, entries in opt["state"].items():
        keys[str(idx)] = list(entries)
        for key, value in entries.items():
            tensors[f"{idx}.{key}"] = value.contiguous() if torch.is_tensor(value) else torch.tensor(value)
    save_file(tensors, tmp / "optimizer.safetensors")
    meta = {"step": step, "clip": clip, "param_groups": opt["param_groups"], "state_keys": keys}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _load_checkpoint(path: Path, unet, optimizer, names: list[str], clip: dict) -> int:
    meta = json.loads((path / "state.json").read_text())
    if meta["clip"] != clip:
        saved = meta["clip"]
        raise ValueError(
            f"{path} was made for another clip or caption ({saved['caption']!r}, {saved['shape']}); "
            "use another output_dir"
        )
    tuned = load_file(path / "tuned.safetensors")
    if sorted(tuned) != sorted(names):
        raise ValueError(f"{path} holds other parameters than this UNet's tuned ones; use another output_dir")
    unet.load_state_dict(tuned, strict=False)
    tensors = load_file(path / "optimizer.safetensors")
    state = {int(i): {k: tensors[f"{i}.{k}"] for k in keys} for i, keys in meta["state_keys"].items()}
    optimizer.load_state_dict({"param_groups": meta["param_groups"], "state": state})
    return meta["step"]


# ---------------------------------------------------------------- the tuned model
def save_tuned(
    path: str | Path,
    unet: UNet3DConditionModel,
    vae,
    text_encoder,
    tokenizer,
    scheduler,
    *,
    inversion_latents: torch.Tensor | None = None,
    inversion_steps: int | None = None,
    meta: dict | None = None,
    text_encoder_from: str | None = None,
) -> Path:
    """Write a tuned model as a diffusers-layout `TextToVideoSDPipeline` folder (t2v.models.loading.save_model)
    that `TextToVideoPipeline.from_pretrained` loads, plus the clip's DDIM inversion latents in
    `inversion/latents.safetensors` (t2v.pipelines.inversion.load_inversion reads them).

    `t2v_model.json` says what was tuned and how: "tuned" holds `tune`'s record (caption, steps, lr,
    frames, size, seed, what trained) updated with `meta` (e.g. {"source_frames": 120}); "spatial_attention":
    "sparse-causal" where the UNet has it (t2v.pipelines.inversion.load_tuned switches it back on); and
    "inversion" (file, shape, `inversion_steps`). text_encoder_from="minilm": the text encoder is t2v's
    MiniLM, not copied (as the embedded models). Pass the DDIM scheduler the inversion pairs with.
    """
    pipe = TextToVideoPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
    note: dict = {"tuned": {**getattr(unet, TUNING_ATTRIBUTE, {}), **(meta or {})}}
    if has_sparse_causal_attention(unet):
        note["spatial_attention"] = "sparse-causal"
    if inversion_latents is not None:
        shape = list(inversion_latents.shape)
        note["inversion"] = {"file": INVERSION_FILE, "shape": shape, "num_inference_steps": inversion_steps}
    path = Path(path)
    shutil.rmtree(path / Path(INVERSION_FILE).parent, ignore_errors=True)  # none stale from an earlier save
    path = save_model(pipe, path, text_encoder_from=text_encoder_from, meta=note)
    if inversion_latents is not None:
        (path / INVERSION_FILE).parent.mkdir(parents=True, exist_ok=True)
        save_file({"latents": inversion_latents.detach().float().cpu().contiguous()}, path / INVERSION_FILE)
    return path

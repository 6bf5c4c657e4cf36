"""The training loop every stage shares: Accelerate, checkpoints with resume, EMA, the noise schedule."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .config import TrainConfig, config_to_dict
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
    optimizer.load_state_dict(
        {
            "param_groups": meta["param_groups"],
            "state": {int(i): {k: tensors[f"{i}.{k}"] for k in keys} for i, keys in meta["state"].items()},
        }
    )
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
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(config.seed + step),
    )
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

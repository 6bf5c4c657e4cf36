"""`LongVideoPipeline`: videos of any length and storyboards from a text-to-video model, no retraining.

Past the model's native length a prompt is drawn in overlapping windows of that length
(FreeNoise: rescheduled start noise, window predictions fused at every step) or, for models whose
motion spans their clip (the embedded model), as one clip of keyframes spread over the scene and
interpolated. A storyboard draws each scene with its own prompt and dissolves across the cuts.
The planning is in `plan.py`, the tensor work in `blend.py`; see docs/long-video.md.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from t2v.models.defaults import AUTO, SCENE_MOTIONS

from ..denoise import guided_noise, scheduler_step, step_end
from ..regions import check_regions, latent_masks, regional_attention, token_biases
from ..text_to_video import OUTPUT_TYPES, TextToVideoPipeline, TextToVideoPipelineOutput
from .blend import choose_transitions, crossfade, expand_keyframes, reschedule_scene_noise
from .plan import Plan, one_pass, plan_dissolve, plan_keyframes, plan_windows, resolve_transitions, scene_mix
from .storyboard import MAX_LONG_FRAMES, Scene, check_scene, check_transition, scenes_from_prompt_dict


class LongVideoPipeline(TextToVideoPipeline):
    """Long videos and storyboards from a text-to-video model (same components, no retraining).

    >>> long = LongVideoPipeline(**pipe.components)
    >>> scenes = [Scene("a red circle moving right", 32), Scene("a blue square moving up", 32)]
    >>> frames = long(scenes=scenes, seed=0).frames[0]
    """

    def check_long_inputs(
        self, prompt, scenes, num_frames, window_size, window_overlap, transition_frames, scene_motion, output_type
    ) -> None:
        """Raise `ValueError` naming the argument, its value and what is allowed."""
        if (prompt is None) == (scenes is None):
            raise ValueError("pass either prompt (one scene) or scenes (a storyboard), not both or neither")
        if scenes is not None:
            if not scenes:
                raise ValueError("scenes is empty: give at least one Scene(prompt, frames)")
            for i, s in enumerate(scenes, 1):
                if not isinstance(s, Scene):
                    raise ValueError(f"scene {i}: expected a Scene(prompt, frames), got {s!r}")
                check_scene(i, s)
        elif not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        if not isinstance(num_frames, int) or not 1 <= num_frames <= MAX_LONG_FRAMES:
            raise ValueError(f"num_frames must be an integer in [1, {MAX_LONG_FRAMES}], got {num_frames!r}")
        if not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f"window_size must be an integer >= 2, got {window_size!r}")
        if not isinstance(window_overlap, int) or not 0 <= window_overlap < window_size:
            raise ValueError(
                f"window_overlap must be an integer in [0, window_size - 1] = [0, {window_size - 1}], "
                f"got {window_overlap!r}"
            )
        check_transition("transition_frames", transition_frames)
        if scene_motion not in SCENE_MOTIONS:
            raise ValueError(f"scene_motion must be one of {SCENE_MOTIONS}, got {scene_motion!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")

    def _denoise(
        self,
        latents,
        plan: Plan,
        embeds,
        negative,
        guidance_scale,
        timesteps,
        generator,
        windows_per_batch,
        callback_on_step_end,
        callback_inputs,
    ):
        """Every pass of `plan` at every step, predictions fused per frame, one solver step on all frames."""
        device, do_cfg = latents.device, negative is not None
        frames = [torch.from_numpy(p.frames).to(device) for p in plan.passes]
        coefs = [torch.from_numpy(p.coef).to(device=device, dtype=embeds.dtype).view(1, -1, 1, 1) for p in plan.passes]
        groups = []  # passes of the same length run together, a few at a time
        for length in sorted({len(f) for f in frames}, reverse=True):
            same = [k for k, f in enumerate(frames) if len(f) == length]
            groups += [same[i : i + windows_per_batch] for i in range(0, len(same), windows_per_batch)]
        step_kwargs = self._step_kwargs(generator, 0.0, latents.shape[2])
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps) * len(plan.passes)) as bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                noise_pred = torch.zeros_like(latents)
                for group in groups:
                    x = torch.cat([latents[:, :, frames[k]] for k in group])
                    text = torch.stack([embeds[plan.passes[k].scene] for k in group])
                    if do_cfg:  # one unconditional half per window
                        text = torch.cat([negative[:1].expand(len(group), -1, -1), text])
                    pred = guided_noise(self.unet, self.scheduler, x, t, text.to(self.unet.dtype), guidance_scale)
                    for j, k in enumerate(group):
                        noise_pred[0, :, frames[k]] += pred[j] * coefs[k]
                    bar.update(len(group))
                latents = scheduler_step(self.scheduler, noise_pred, t, latents, **step_kwargs)
                values = step_end(self, callback_on_step_end, callback_inputs, i, t, {"latents": latents})
                latents = values["latents"]
        return latents

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | dict[int, str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        *,
        scenes: list[Scene] | None = None,
        window_size: int | None = None,
        window_overlap: int | None = None,
        transition_frames: int | str | None = None,
        scene_motion: str | None = None,
        windows_per_batch: int = 4,
        regions: list | None = None,
        seed: int | None = None,
    ):
        """Generate `num_frames` frames for one prompt, or sum(frames) for a list of scenes.

        Arguments in the order of TextToVideoPipeline (diffusers' FreeNoise takes the same names), then
        the long-video options, keyword-only.

        Args:
            prompt / scenes: one prompt, or a storyboard (`Scene(prompt, frames, transition_frames)`).
                A prompt dict {first_frame: prompt} (as diffusers' FreeNoise takes one) is a storyboard
                whose scenes start at those frames and end at the next, the last at num_frames.
            num_frames: frames for one prompt (default: four windows).
            window_size, window_overlap: default the model's native length and half of it.
            transition_frames: frames blended across each cut, or "auto" (the shortest even length,
                up to a quarter of each scene on its side, whose crossfade changes no frame by more
                than 2.5x the median change inside the scenes); a scene's own wins. Default: the
                model's (`pipe.defaults`).
            scene_motion: how a scene longer than a window is drawn: "keyframes" (one clip of
                window keyframes over the scene, interpolated in latent space: one motion per
                scene) or "windows" (overlapping clips, fused). Default: the model's. With
                "keyframes", callback_on_step_end sees the keyframes' latents.
            regions: `t2v.pipelines.regions.Region`s with masks over the whole video; one prompt
                drawn in one pass only (keyframes, or at most window_size frames).
            callback_on_step_end: as TextToVideoPipeline's, after each step of the whole video.
            output_type: as TextToVideoPipeline; "latent" returns each frame's own version (a
                dissolve is crossfaded after decoding).

        Returns:
            `TextToVideoPipelineOutput`, with `transition_frames` per cut for a storyboard.
        """
        # 1. Defaults and input checks
        if isinstance(prompt, dict):
            prompt, scenes = None, scenes_from_prompt_dict(prompt, num_frames)
        d = self.defaults
        guidance_scale = d.guidance_scale if guidance_scale is None else guidance_scale
        num_inference_steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        window_size = window_size or d.num_frames
        window_overlap = window_size // 2 if window_overlap is None else window_overlap
        if scenes is not None:
            scenes = list(scenes)
            num_frames = sum(getattr(s, "frames", 0) for s in scenes)
        elif num_frames is None:
            num_frames = 4 * window_size
        scene_motion = d.scene_motion if scene_motion is None else scene_motion
        transition_frames = d.transition_frames if transition_frames is None else transition_frames
        self.check_long_inputs(
            prompt, scenes, num_frames, window_size, window_overlap, transition_frames, scene_motion, output_type
        )
        if regions is not None and (scenes is not None or not one_pass(num_frames, window_size, scene_motion)):
            got = "a storyboard" if scenes is not None else f"{num_frames} frames, scene_motion={scene_motion!r}"
            raise ValueError(
                "regions work in one pass: one prompt, with scene_motion='keyframes' or at most "
                f"window_size frames; got {got}"
            )
        scenes = scenes or [Scene(prompt, num_frames)]
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        window = min(window_size, num_frames)
        self.check_inputs(
            scenes[0].prompt,
            negative_prompt,
            window,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            1,
            output_type,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        if regions is not None:
            check_regions(regions, prompt, num_frames, height, width)
        d.warn_about([s.prompt for s in scenes])
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)
        device = self._execution_device
        self._guidance_scale, self._clip_skip, self._cross_attention_kwargs = guidance_scale, None, None
        self._interrupt = False
        do_cfg = guidance_scale > 1.0

        # 2. Text: one embedding per scene
        embeds, negative = self.encode_prompt([s.prompt for s in scenes], device, 1, do_cfg, negative_prompt)

        # 3. The plan: "auto" cuts at their longest, keyframes for long scenes, windows or a dissolve
        scenes, auto = resolve_transitions(scenes, transition_frames)
        video_scenes, video_frames = scenes, num_frames
        if scene_motion == "keyframes":
            scenes, times = plan_keyframes(scenes, window)
            num_frames = sum(sc.frames for sc in scenes)
        stride = window - window_overlap if num_frames > window else window
        dissolve = len(scenes) > 1
        plan = (
            plan_dissolve(scene_mix(scenes, 0), window, stride)
            if dissolve
            else plan_windows(num_frames, window, stride)
        )

        # 4. Start noise: FreeNoise rescheduling within each scene; a dissolve's other versions of a
        # frame start from that frame's noise
        shape = (
            1,
            self.unet.config.in_channels,
            num_frames,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        latents = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        latents = reschedule_scene_noise(latents, [sc.frames for sc in scenes], window, stride, generator)
        self.scheduler.set_timesteps(
            num_inference_steps, device=device
        )  # before init_noise_sigma, which may depend on it
        latents = latents * self.scheduler.init_noise_sigma
        if plan.extra:
            latents = torch.cat([latents, latents[:, :, [f for f, _ in plan.extra]]], dim=2)

        # 5. Denoising (with regions: one pass, each region's phrase heard in its mask only)
        regional = contextlib.nullcontext()
        if regions is not None:
            masks = latent_masks(regions, video_frames, latents.shape[-2:])
            if num_frames != video_frames:
                masks = masks[:, np.round(times).astype(int)]
            bias = token_biases(self.tokenizer, prompt, regions, self.tokenizer.model_max_length)
            regional = regional_attention(self.unet, bias.to(device), masks.to(device), do_cfg)
        with regional:
            latents = self._denoise(
                latents,
                plan,
                embeds,
                negative,
                guidance_scale,
                self.scheduler.timesteps,
                generator,
                windows_per_batch,
                callback_on_step_end,
                callback_on_step_end_tensor_inputs,
            )

        # 6. Keyframes: the video's frames (and a dissolve's other versions) between them
        extra = plan.extra
        if num_frames != video_frames:
            latents, extra = expand_keyframes(latents, times, extra, video_scenes, dissolve)
            scenes, num_frames = video_scenes, video_frames

        # 7. Decode in chunks of frames (memory independent of length), crossfade the dissolves
        if output_type == "latent":
            frames = latents[:, :, :num_frames]
        else:
            video = self._decode_in_windows(latents, window)
            if extra:
                if auto:
                    scenes = choose_transitions(video, scenes, auto, extra)
                video = crossfade(video, scene_mix(scenes, 0), extra, range(num_frames))
            frames = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        transitions = [
            None if output_type == "latent" and k in auto else s.transition_frames for k, s in enumerate(scenes)
        ]
        return TextToVideoPipelineOutput(
            frames=frames, seed=seed, transition_frames=transitions[1:] if dissolve else None
        )

    def _decode_in_windows(self, latents: torch.Tensor, window: int) -> torch.Tensor:
        """decode_latents, a window of frames at a time unless VAE slicing already sets a chunk size."""
        chunk = self.vae_decode_chunk_size
        self.vae_decode_chunk_size = chunk or window
        try:
            return self.decode_latents(latents)
        finally:
            self.vae_decode_chunk_size = chunk


__all__ = ["AUTO", "LongVideoPipeline"]

"""Text-to-image: diffusers' `StableDiffusionPipeline`, loaded the t2v way.

t2v does not rewrite Stable Diffusion's pipeline: the picture model that the zero-shot, control, edit
and tuning pipelines stand on is a plain SD-layout model, and diffusers' pipeline runs it (and any SD
1.x/2.x folder or Hub id) as well as it runs SD itself. What t2v adds is how it is loaded (checked
safetensors only, no code, the embedded model's MiniLM from its own package), the model's recommended
settings (`t2v_model.json`, `ImageModelDefaults`), a `seed` keyword, and warnings for prompts the
embedded model cannot draw.

Example:
    >>> from t2v import TextToImagePipeline
    >>> pipe = TextToImagePipeline.from_pretrained()  # the embedded t2v-shapes-image model
    >>> image = pipe("a small red circle on a black background", seed=0).images[0]
    >>> image.save("circle.png")
"""

from __future__ import annotations

import torch

import t2v.models.patch_vae  # noqa: F401  (diffusers loads a model's classes only from modules already imported)
from t2v.models.defaults import ImageModelDefaults
from t2v.models.loading import checked_from_pretrained, quiet


with quiet():  # (transformers says, at import, that its image processors would prefer torchvision)
    from diffusers import StableDiffusionPipeline


class ImageModelLoading:
    """`from_pretrained` the t2v way for pipelines that run a text-to-image model (a mixin before diffusers'
    pipeline class): an SD-layout directory, a Hub id, or None for t2v's embedded text-to-image model,
    checked first (safetensors only, never pickle, no Python code), with the model's `ImageModelDefaults`."""

    model_kind = "text-to-image"  # what t2v.models.loading checks the model directory for

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, **kwargs):
        kwargs.setdefault("safety_checker", None)  # no safety checker is loaded unless the caller passes one
        kwargs.setdefault("requires_safety_checker", False)
        pipe, info = checked_from_pretrained(
            super().from_pretrained, pretrained_model_name_or_path, cls.model_kind, **kwargs
        )
        pipe.defaults = ImageModelDefaults.read(info)
        return pipe

    @property
    def defaults(self) -> ImageModelDefaults:
        return getattr(self.unet, "t2v_defaults", None) or ImageModelDefaults()

    @defaults.setter
    def defaults(self, value: ImageModelDefaults) -> None:
        self.unet.t2v_defaults = value  # kept with the weights they belong to, as the video pipelines do


class TextToImagePipeline(ImageModelLoading, StableDiffusionPipeline):
    """diffusers' `StableDiffusionPipeline` with t2v's checked loading, model defaults and `seed`."""

    def __call__(self, prompt=None, height=None, width=None, num_inference_steps=None, *args, seed=None, **kwargs):
        """diffusers' call; `num_inference_steps` and `guidance_scale` default to the model's, `seed`
        (keyword-only) makes a CPU generator when no `generator` is given."""
        if seed is not None and kwargs.get("generator") is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed is not None:
            kwargs["generator"] = torch.Generator("cpu").manual_seed(int(seed))
        if not args:
            kwargs.setdefault("guidance_scale", self.defaults.guidance_scale)
        self.defaults.warn_about(prompt)
        steps = self.defaults.num_inference_steps if num_inference_steps is None else num_inference_steps
        return super().__call__(prompt, height, width, steps, *args, **kwargs)

"""LoRA adapters for the ModelScope-layout UNet through diffusers' own loaders.

diffusers' `UNet3DConditionModel` lacks `PeftAdapterMixin`, so diffusers' LoRA loader mixin
(`load_lora_weights`, `set_adapters`, `fuse_lora`, ...) cannot load into it. `with_adapters`
gives a UNet those methods in place: its class becomes a subclass of diffusers' class and the
mixin, with the same name and module, so that saved configs and model_index.json still name
diffusers' `UNet3DConditionModel` (other tools load the model unchanged). No weights change.
"""

from __future__ import annotations

import contextlib
import functools

from diffusers import UNet3DConditionModel
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers


@functools.cache
def _adapter_class(cls: type) -> type:
    return type(cls.__name__, (cls, PeftAdapterMixin), {"__module__": cls.__module__, "__doc__": cls.__doc__})


def with_adapters(unet):
    """`unet` with diffusers' PEFT adapter methods (a UNet that has them is returned as it is)."""
    if unet is None or isinstance(unet, PeftAdapterMixin):
        return unet
    if not isinstance(unet, UNet3DConditionModel):
        raise ValueError(f"LoRA adapters need a UNet3DConditionModel, got {type(unet).__name__}")
    unet.__class__ = _adapter_class(type(unet))
    return unet


def has_lora(module) -> bool:
    return bool(getattr(module, "peft_config", None))


@contextlib.contextmanager
def lora_scale_of(module, scale: float | None):
    """LoRA layers of `module` at strength `scale` inside the block (no-op without LoRA or scale)."""
    scaled = scale is not None and USE_PEFT_BACKEND and has_lora(module)
    if scaled:
        scale_lora_layers(module, scale)
    try:
        yield
    finally:
        if scaled:
            unscale_lora_layers(module, scale)

"""Frame positions for the temporal attention of a ModelScope-layout UNet, without new weights.

diffusers' `UNet3DConditionModel` attends across frames with no positional encoding: its temporal
attention is blind to frame order, which only reaches the network through the padding of the
temporal convolutions. "Moving right" and "moving left" differ only in that order. Here a fixed
sinusoidal encoding of the frame index (as in Transformer and AnimateDiff's motion modules) is
added to the input of every temporal self-attention, through an attention processor: the weights
keep the diffusers layout, and the model's `t2v_model.json` says `"temporal_position":
"sinusoidal"` so that t2v's loader switches it on (diffusers' own pipeline would not).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

KINDS = ("sinusoidal",)


def sinusoidal_positions(num_frames: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """[num_frames, dim]: sin/cos of the frame index at geometric frequencies (base 10000)."""
    pos = torch.arange(num_frames, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_frames, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


@functools.lru_cache(maxsize=32)
def _cached_positions(num_frames: int, dim: int, device, dtype) -> torch.Tensor:
    return sinusoidal_positions(num_frames, dim, device, dtype)  # built once per shape, not per denoising step


class FramePositionProcessor(AttnProcessor2_0):
    """Temporal self-attention with the frame index added to its input (hidden_states: [B*H*W, F, C])."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        f, c = hidden_states.shape[-2:]
        hidden_states = hidden_states + _cached_positions(f, c, hidden_states.device, hidden_states.dtype)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def temporal_attention_names(unet) -> list[str]:
    """Processor names of the temporal self-attentions (the first attention of each temporal block)."""
    return [n for n in unet.attn_processors if ("temp_attentions" in n or n.startswith("transformer_in")) and n.endswith("attn1.processor")]


def add_frame_positions(unet, kind: str | None = "sinusoidal"):
    """Switch frame positions on (kind="sinusoidal") or off (kind=None) in `unet`'s temporal attention, in place."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"temporal_position must be one of {KINDS} or None, got {kind!r}")
    names = temporal_attention_names(unet)
    if not names:
        raise ValueError(f"{type(unet).__name__} has no temporal attention to give frame positions to")
    processors = dict(unet.attn_processors)
    for name in names:
        processors[name] = FramePositionProcessor() if kind else AttnProcessor2_0()
    unet.set_attn_processor(processors)
    return unet


def has_frame_positions(unet) -> bool:
    return any(isinstance(unet.attn_processors[n], FramePositionProcessor) for n in temporal_attention_names(unet))


@contextlib.contextmanager
def frame_positions_kept(unet):
    """Put frame positions back after code that resets every attention processor (attention
    slicing, xformers): temporal attention spans a few frames, so it is left unsliced."""
    had = has_frame_positions(unet)
    yield
    if had and not has_frame_positions(unet):
        add_frame_positions(unet)

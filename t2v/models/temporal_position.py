"""Frame positions for the temporal attention of a ModelScope-layout UNet, without new weights.

diffusers' `UNet3DConditionModel` attends across frames with no positional encoding: its temporal
attention is blind to frame order, which only reaches the network through the padding of the
temporal convolutions. "Moving right" and "moving left" differ only in that order. Here a fixed
sinusoidal encoding of the frame index (as in Transformer and AnimateDiff's motion modules) is
added to the input of every temporal self-attention, through an attention processor: the weights
keep the diffusers layout, and the model's `t2v_model.json` says `"temporal_position":
"sinusoidal"` so that t2v's loader switches it on (diffusers' own pipeline would not).

`"sinusoidal+spatial"` also adds positions to the inputs of the spatial attention of each frame
(self- and cross-attention) and to the self-attention's output: a third of the channels code the
frame index, a third the row and a third the column. diffusers' spatial transformers have no
positional encoding either, so without it the layers that read the prompt know neither where nor in
which frame they draw; with it, "moving right" can map to "on the left in early frames, on the right
in late ones" directly, instead of through the temporal layers, which never see the prompt.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from diffusers.models.attention_processor import AttnProcessor2_0


KINDS = ("sinusoidal", "sinusoidal+spatial")


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

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        f, c = hidden_states.shape[-2:]
        hidden_states = hidden_states + _cached_positions(f, c, hidden_states.device, hidden_states.dtype)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


@functools.lru_cache(maxsize=32)
def frame_grid_positions(num_frames: int, height: int, width: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """[num_frames, height * width, dim]: sinusoidal codes of (frame, row, column), each in its own
    third of the channels (frames get the remainder), so attention can read them apart."""
    third = dim // 3
    f = sinusoidal_positions(num_frames, dim - 2 * third, device, dtype)
    y = sinusoidal_positions(height, third, device, dtype)
    x = sinusoidal_positions(width, third, device, dtype)
    grid = torch.cat([y[:, None, :].expand(height, width, third), x[None, :, :].expand(height, width, third)], -1)
    frame_codes = f[:, None, :].expand(-1, height * width, -1)
    grid_codes = grid.reshape(1, height * width, 2 * third).expand(num_frames, -1, -1)
    return torch.cat([frame_codes, grid_codes], -1)


class SpatialFramePositionProcessor(AttnProcessor2_0):
    """Spatial attention of each frame with (frame, row, column) codes added to its query input
    (hidden_states: [B*F, h*w, C]) and, for self-attention, to its output. F and the latent's
    H x W come from the UNet's input through a forward pre-hook; h x w is H x W downsampled by the
    UNet level the attention sits at."""

    def __init__(self, frames: dict):
        super().__init__()
        self.frames = frames  # shared with the UNet's pre-hook: {"n": num_frames, "hw": (H, W)} of the current call

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        f, hw = self.frames.get("n"), self.frames.get("hw")
        if f and hw and hidden_states.ndim == 3 and hidden_states.shape[0] % f == 0:
            n, c = hidden_states.shape[1:]
            level = round(math.log(hw[0] * hw[1] / n, 4))
            h, w = math.ceil(hw[0] / 2**level), math.ceil(hw[1] / 2**level)
            if h * w != n:
                raise RuntimeError(
                    f"spatial attention over {n} positions does not match a {hw[0]}x{hw[1]} latent at any level"
                )
            pe = frame_grid_positions(f, h, w, c, hidden_states.device, hidden_states.dtype)
            pe = pe.repeat(hidden_states.shape[0] // f, 1, 1)
            out = super().__call__(
                attn, hidden_states + pe, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )
            # self-attention also writes each token's own code into the block's residual stream (an attention
            # output only carries an attention-weighted blur of them), so the cross-attention and the
            # feed-forward after it can combine "which frame, where" with the prompt
            return out + pe if encoder_hidden_states is None and out.shape == pe.shape else out
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def _record_frames(frames: dict):
    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        ok = sample is not None and sample.ndim == 5
        frames["n"], frames["hw"] = (int(sample.shape[2]), tuple(sample.shape[3:])) if ok else (None, None)

    return hook


def spatial_attention_names(unet) -> list[str]:
    """Processor names of the per-frame spatial attentions (self and cross) of the UNet's transformers."""
    return [n for n in unet.attn_processors if ".attentions." in n and "temp_attentions" not in n]


def temporal_attention_names(unet) -> list[str]:
    """Processor names of the temporal self-attentions (the first attention of each temporal block)."""
    return [
        n
        for n in unet.attn_processors
        if ("temp_attentions" in n or n.startswith("transformer_in")) and n.endswith("attn1.processor")
    ]


def add_frame_positions(unet, kind: str | None = "sinusoidal"):
    """Switch frame positions on (kind="sinusoidal" or "sinusoidal+spatial") or off (kind=None) in `unet`'s
    attention, in place."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"temporal_position must be one of {KINDS} or None, got {kind!r}")
    names = temporal_attention_names(unet)
    if not names:
        raise ValueError(f"{type(unet).__name__} has no temporal attention to give frame positions to")
    processors = dict(unet.attn_processors)
    for name in names:
        processors[name] = FramePositionProcessor() if kind else AttnProcessor2_0()
    hook = getattr(unet, "_t2v_frames_hook", None)
    if hook is not None:
        hook.remove()
        unet._t2v_frames_hook = None
    for name in spatial_attention_names(unet):
        if isinstance(processors[name], SpatialFramePositionProcessor):
            processors[name] = AttnProcessor2_0()
    if kind == "sinusoidal+spatial":
        frames: dict = {}
        for name in spatial_attention_names(unet):
            processors[name] = SpatialFramePositionProcessor(frames)
        unet._t2v_frames_hook = unet.register_forward_pre_hook(_record_frames(frames), with_kwargs=True)
    unet.set_attn_processor(processors)
    return unet


def frame_position_kind(unet) -> str | None:
    """The kind of frame positions `unet` has now (see KINDS), or None."""
    procs = unet.attn_processors
    if not any(isinstance(procs[n], FramePositionProcessor) for n in temporal_attention_names(unet)):
        return None
    spatial = any(isinstance(p, SpatialFramePositionProcessor) for p in procs.values())
    return "sinusoidal+spatial" if spatial else "sinusoidal"


def has_frame_positions(unet) -> bool:
    return frame_position_kind(unet) is not None


@contextlib.contextmanager
def frame_positions_kept(unet):
    """Put frame positions back after code that resets every attention processor (attention
    slicing, xformers): temporal attention spans a few frames, so it is left unsliced."""
    had = frame_position_kind(unet)
    yield
    if had and frame_position_kind(unet) != had:
        add_frame_positions(unet, had)

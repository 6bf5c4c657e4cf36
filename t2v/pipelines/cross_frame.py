"""What ties a zero-shot video's frames to its first: cross-frame attention and the global motion.

Cross-frame attention (Text2Video-Zero): each frame's self-attention reads its video's first frame.

A pipeline that runs an image UNet on the frames of videos passes them as one batch of images laid
out [branch, video, frame]: the guidance branches (unconditional and text for classifier-free
guidance, three for Instruct-Pix2Pix, one without guidance), then the videos, then their frames. Every
run of `num_frames` consecutive images is one video in one branch, and its first image is the anchor:
in self-attention (no `encoder_hidden_states`) the queries of every frame attend to the anchor's keys
and values, so all frames draw appearance from frame 0. Cross-attention (to the text) is unchanged.

Only `num_frames` is needed, not the number of branches (diffusers' deprecated
`CrossFrameAttnProcessor(batch_size=2)` counts branches and divides by zero on one prompt without
guidance). The pipeline sets it on the processor before each UNet call whose frame count changes:

    >>> with cross_frame_attention(pipe.unet, num_frames=8) as processor:
    ...     noise = pipe.unet(latents, t, encoder_hidden_states=embeds).sample  # latents [B * 8, C, h, w]
    ...     processor.num_frames = 1  # then single frames: ordinary self-attention

The motion (`warp_latents`, `warp_pixels`): frame k shows frame 0's content moved k times a shift
and grown zoom**k times about the centre; `strength_to_motion` converts the original's units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


class CrossFrameAttnProcessor:
    """A diffusers attention processor (scaled dot-product attention) whose self-attention takes keys
    and values from the first frame of each group of `num_frames` batch entries."""

    def __init__(self, num_frames: int = 1):
        self.num_frames = num_frames

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
        if image_shape is not None:  # [B, C, H, W] -> tokens [B, H*W, C]
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        if encoder_hidden_states is None:
            out = self._self_attention(attn, hidden_states, attention_mask)
        else:
            if attn.norm_cross:
                encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
            out = _attend(attn, attn.to_q(hidden_states), encoder_hidden_states, attention_mask)

        out = attn.to_out[1](attn.to_out[0](out))  # projection, dropout
        if image_shape is not None:
            out = out.transpose(1, 2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _self_attention(self, attn, hidden_states: torch.Tensor, attention_mask) -> torch.Tensor:
        """Queries of group g, frame f attend to the tokens of group g, frame 0. The frames of a group are
        folded into the query length, so keys and values are projected for the anchors only."""
        batch, tokens, _ = hidden_states.shape
        frames = self.num_frames
        if frames < 1 or batch % frames:
            raise ValueError(f"a batch of {batch} images is not a whole number of videos of {frames} frames")
        groups = batch // frames
        query = attn.to_q(hidden_states).reshape(groups, frames * tokens, -1)
        anchors = hidden_states.reshape(groups, frames, tokens, -1)[:, 0]
        if attention_mask is not None:  # each frame's mask, over the anchor's tokens
            mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
            mask = mask.view(batch, attn.heads, -1, mask.shape[-1]).expand(-1, -1, tokens, -1)
            attention_mask = mask.reshape(groups, frames, attn.heads, tokens, -1).transpose(1, 2).flatten(2, 3)
        return _attend(attn, query, anchors, attention_mask, prepared=True).reshape(batch, tokens, -1)


def _attend(attn, query: torch.Tensor, context: torch.Tensor, mask, prepared: bool = False) -> torch.Tensor:
    """Multi-head attention of query [B, Lq, D] over context tokens [B, Lk, Dc] (projected here)."""
    key, value = attn.to_k(context), attn.to_v(context)
    batch, heads = query.shape[0], attn.heads
    if mask is not None and not prepared:
        mask = attn.prepare_attention_mask(mask, key.shape[1], batch)
        mask = mask.view(batch, heads, -1, mask.shape[-1])

    def split(x):
        return x.view(batch, x.shape[1], heads, -1).transpose(1, 2)

    query, key, value = split(query), split(key), split(value)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=attn.scale)
    return out.transpose(1, 2).flatten(2).to(query.dtype)


def cross_frame_processors(model, num_frames: int = 1) -> dict[str, CrossFrameAttnProcessor]:
    """One shared `CrossFrameAttnProcessor` for every attention layer of `model` (a UNet or ControlNet),
    as a dict for `model.set_attn_processor`: setting `num_frames` on it sets it everywhere."""
    processor = CrossFrameAttnProcessor(num_frames)
    return dict.fromkeys(model.attn_processors, processor)


@contextlib.contextmanager
def cross_frame_attention(*models, num_frames: int = 1) -> Iterator[CrossFrameAttnProcessor]:
    """Cross-frame attention in every attention layer of `models` (the UNet, a ControlNet, ...) inside
    the block, through one shared processor (yielded); each model's previous processors are put back
    afterwards, also on error, so the models are as they were."""
    processor = CrossFrameAttnProcessor(num_frames)
    saved = [model.attn_processors for model in models]
    try:
        for model in models:
            model.set_attn_processor(processor)
        yield processor
    finally:
        for model, processors in zip(models, saved):
            model.set_attn_processor(processors)


# ---------------------------------------------------------------- motion from the anchor frame
ORIGINAL_GRID = 512  # Text2Video-Zero defines its motion field on a 512x512 grid, whatever the frame size


def strength_to_motion(strength: float, size: int) -> float:
    """The original's motion_field_strength (+ moves content left/up) in output pixels per frame (+ right/down)."""
    return -strength * size / ORIGINAL_GRID


def source_coords(size: int, frame_ids, shift: float, zoom: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """Along one axis of `size` cells, where cell p of frame k samples frame 0 ([N, size], float64):
    c + (p - c - k * shift) / zoom**k + offset, c the centre (content moves `shift` per frame)."""
    k = torch.as_tensor(list(frame_ids), dtype=torch.float64)[:, None]
    c = (size - 1) / 2
    return c + (torch.arange(size, dtype=torch.float64) - c - k * shift) / zoom**k + offset


def _mirror(index: torch.Tensor, size: int) -> torch.Tensor:
    index = index.remainder(2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def warp_latents(latents, frame_ids, shift, zoom: float = 1.0, offset=(0.0, 0.0)) -> torch.Tensor:
    """Latents [N, C, h, w], image n moved as frame `frame_ids[n]` (`shift`, `offset` in cells): nearest
    cell, mirrored at the borders, as the original's grid_sample(mode="nearest", padding_mode="reflection")
    (which rounds exact halves to even; here they round up, so a half-cell motion moves every column alike)."""
    n, c, h, w = latents.shape
    xs = _mirror(torch.floor(source_coords(w, frame_ids, shift[0], zoom, offset[0]) + 0.5).long(), w)
    ys = _mirror(torch.floor(source_coords(h, frame_ids, shift[1], zoom, offset[1]) + 0.5).long(), h)
    index = (ys[:, :, None] * w + xs[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return latents.flatten(2).gather(2, index.to(latents.device)).view(n, c, h, w)


def warp_pixels(images, frame_ids, shift, zoom: float = 1.0) -> torch.Tensor:
    """Images [N, 3, H, W], image n moved as frame `frame_ids[n]` (`shift` in pixels): bilinear, the border
    pixels repeated outside (no mirrored copies of objects near the edge)."""
    n, _, h, w = images.shape
    gx = (2 * source_coords(w, frame_ids, shift[0], zoom) + 1) / w - 1
    gy = (2 * source_coords(h, frame_ids, shift[1], zoom) + 1) / h - 1
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=-1)
    return F.grid_sample(images, grid.to(images), mode="bilinear", padding_mode="border", align_corners=False)

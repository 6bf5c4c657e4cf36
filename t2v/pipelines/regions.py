"""Regional prompting: each part of a prompt is heard only in its own region of the video.

A prompt such as "a red square moving right and a blue circle standing still" names two objects;
a small model often binds the attributes to the wrong one (the square stands still, the circle
moves). With regions, the pixels of each region's mask cannot attend to the words of the *other*
regions' phrases in cross-attention (an additive -inf bias on those tokens), so inside the top
band only "a red square moving right" is heard, inside the bottom band only "a blue circle
standing still"; pixels outside every region hear the whole prompt. The rest of the network
(self-attention, temporal attention, convolutions) sees the whole video, so the scene stays one
scene. This is the token-masking member of the family of eDiff-I's "paint with words" and Dense
Diffusion; unlike attention-couple with one prompt per region, it keeps the whole prompt, so a
model that learned "two objects" from the word "and" still draws two.

    >>> from t2v.pipelines.regions import Region, band_masks
    >>> top, bottom = band_masks(2, "rows", num_frames=16, height=64, width=64)
    >>> prompt = "a red square moving right and a blue circle standing still on a black background"
    >>> video = pipe(prompt, regions=[Region("a red square moving right", top),
    ...                               Region("a blue circle standing still", bottom)]).frames[0]

Works with any UNet3DConditionModel (ModelScope included) and a fast tokenizer (token offsets).
"""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


BLOCKED = -1e4  # additive attention bias for tokens a region must not hear (softmax weight ~ 0)


@dataclass
class Region:
    """`text`: a phrase that occurs in the prompt; `mask`: where it applies, [H, W] or [F, H, W] in
    pixels of the output video, values in [0, 1] (1 = inside)."""

    text: str
    mask: torch.Tensor


def band_masks(n: int, direction: str, num_frames: int, height: int, width: int) -> list[torch.Tensor]:
    """`n` equal bands covering the frame, as [F, H, W] masks: "columns" (left to right) or "rows" (top to bottom)."""
    if direction not in ("columns", "rows"):
        raise ValueError(f"direction must be 'columns' or 'rows', got {direction!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    size = width if direction == "columns" else height
    edges = [round(i * size / n) for i in range(n + 1)]
    masks = []
    for lo, hi in zip(edges, edges[1:]):
        m = torch.zeros(num_frames, height, width)
        if direction == "columns":
            m[:, :, lo:hi] = 1
        else:
            m[:, lo:hi, :] = 1
        masks.append(m)
    return masks


def check_regions(regions, prompt, num_frames: int, height: int, width: int) -> None:
    """Raise ValueError naming the region and what is wrong."""
    if not isinstance(regions, (list, tuple)) or not regions:
        raise ValueError(f"regions must be a non-empty list of Region, got {regions!r}")
    if not isinstance(prompt, str):
        raise ValueError("regions need a single prompt string (the regions' texts are found in it)")
    for i, r in enumerate(regions):
        if not isinstance(r, Region):
            raise ValueError(f"regions[{i}] must be a t2v.pipelines.regions.Region, got {type(r).__name__}")
        if not isinstance(r.text, str) or not r.text.strip() or r.text not in prompt:
            raise ValueError(
                f"regions[{i}].text must be a non-empty part of the prompt, got {r.text!r} (prompt: {prompt!r})"
            )
        if not isinstance(r.mask, torch.Tensor) or r.mask.dim() not in (2, 3):
            raise ValueError(
                f"regions[{i}].mask must be a torch.Tensor [H, W] or [F, H, W], got {type(r.mask).__name__}"
            )
        shape = tuple(r.mask.shape)
        if shape[-2:] != (height, width) or (r.mask.dim() == 3 and shape[0] != num_frames):
            want = f"({height}, {width}) or ({num_frames}, {height}, {width})"
            raise ValueError(f"regions[{i}].mask has shape {shape}; the video needs {want}")
        if not torch.isfinite(r.mask).all() or r.mask.min() < 0 or r.mask.max() > 1:
            raise ValueError(f"regions[{i}].mask values must lie in [0, 1]")


def token_biases(tokenizer, prompt: str, regions: list[Region], max_length: int) -> torch.Tensor:
    """[K, T] additive biases: row k blocks the tokens of every other region's text."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("regions need a fast tokenizer (token offsets); this model's tokenizer is not one")
    offsets = tokenizer(
        prompt, padding="max_length", max_length=max_length, truncation=True, return_offsets_mapping=True
    )["offset_mapping"]
    spans = []
    for r in regions:
        lo = prompt.index(r.text)
        tokens = [j for j, (a, b) in enumerate(offsets) if b > a and a >= lo and b <= lo + len(r.text)]
        if not tokens:
            raise ValueError(f"region text {r.text!r} lies past the text encoder's {max_length} tokens")
        spans.append(tokens)
    bias = torch.zeros(len(regions), len(offsets))
    for k in range(len(regions)):
        for j, tokens in enumerate(spans):
            if j != k:
                bias[k, tokens] = BLOCKED
    for k, tokens in enumerate(spans):
        bias[k, tokens] = 0.0  # a word in two regions' texts stays audible to both
    return bias


def latent_masks(regions: list[Region], num_frames: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """[K, F, h, w] region weights at latent resolution (average pooling); where regions overlap, the
    weights are scaled to sum to 1."""
    h, w = latent_hw
    masks = []
    for r in regions:
        m = r.mask.float()
        m = m.expand(num_frames, *m.shape[-2:]) if m.dim() == 2 else m
        masks.append(F.adaptive_avg_pool2d(m[:, None], (h, w))[:, 0])
    masks = torch.stack(masks)
    total = masks.sum(0, keepdim=True)
    return torch.where(total > 1, masks / total.clamp(min=1e-8), masks)


class RegionalCrossAttnProcessor:
    """Wraps a cross-attention processor: one attention per region (its token bias on the conditional
    rows of the batch), blended by the region masks resized to this layer's resolution.

    state: "bias" [K, T] or per video [B, K, T]; "masks" [K, F, h, w] or per video [B, K, F, h, w] at
    latent resolution; "cfg": whether the batch is [negative prompt videos, prompt videos]."""

    def __init__(self, base, state: dict):
        self.base, self.state = base, state

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        base = lambda bias: self.base(attn, hidden_states, encoder_hidden_states, bias, temb, *args, **kwargs)  # noqa: E731
        if encoder_hidden_states is None:
            return base(attention_mask)
        bias, masks = self.state["bias"], self.state["masks"]
        bias = bias[None] if bias.dim() == 2 else bias  # [B', K, T]
        masks = masks[None] if masks.dim() == 4 else masks  # [B', K, F, h, w]
        rows, n, _ = hidden_states.shape
        b, k, frames, h, w = masks.shape
        scale = round((h * w / n) ** 0.5)
        pooled = F.adaptive_avg_pool2d(masks.reshape(-1, 1, h, w), (h // scale, w // scale)).reshape(b, k, frames, -1)
        videos = rows // frames // (2 if self.state["cfg"] else 1)
        row = torch.arange(rows, device=hidden_states.device)
        video, frame = (row // frames) % videos, row % frames  # the UNet's rows are video-major, frames inside
        weights = pooled[video % b, :, frame].to(hidden_states)  # [rows, K, n]
        token_bias = bias[video % bias.shape[0]].to(hidden_states)  # [rows, K, T]
        if self.state["cfg"]:
            token_bias[: rows // 2] = 0  # the negative prompt is heard everywhere, as without regions
        rest = 1 - weights.sum(1)  # pixels outside every region hear the whole prompt
        out = base(attention_mask) * rest[..., None] if (rest > 0).any() else 0
        for i in range(k):
            mask_i = token_bias[:, i : i + 1]
            if attention_mask is not None:
                mask_i = mask_i + attention_mask
            out = out + weights[:, i, :, None] * base(mask_i)
        return out


@contextmanager
def regional_attention(unet, bias: torch.Tensor, masks: torch.Tensor, cfg: bool):
    """Install RegionalCrossAttnProcessor on the UNet's spatial cross-attentions for the duration
    (bias and masks as in RegionalCrossAttnProcessor)."""
    state = {"bias": bias, "masks": masks, "cfg": cfg}
    originals = {}
    for name, module in unet.named_modules():
        if getattr(module, "is_cross_attention", False) and name.endswith("attn2"):
            originals[name] = module.processor
            module.set_processor(RegionalCrossAttnProcessor(module.processor, state))
    if not originals:
        raise ValueError("regions need a UNet with cross-attention layers")
    try:
        yield
    finally:
        modules = dict(unet.named_modules())
        for name, processor in originals.items():
            modules[name].set_processor(processor)


def regions_in(unet, tokenizer, regions, prompt: str, latents: torch.Tensor, do_cfg: bool):
    """Regional cross-attention in `unet` for a denoising loop over `latents` (a no-op without regions)."""
    if regions is None:
        return contextlib.nullcontext()
    bias = token_biases(tokenizer, prompt, regions, tokenizer.model_max_length)
    masks = latent_masks(regions, latents.shape[2], latents.shape[-2:]).to(latents.device)
    return regional_attention(unet, bias.to(latents.device), masks, do_cfg)

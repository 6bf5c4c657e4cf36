"""A text-to-image UNet as a video UNet (Tune-A-Video's inflation), and sparse-causal attention.

`inflate_unet` turns a `UNet2DConditionModel` (Stable Diffusion layout) into diffusers'
`UNet3DConditionModel` (ModelScope layout, what `TextToVideoPipeline` runs) with the same blocks and
the 2D weights: each frame goes through the picture model's layers, and the new temporal layers
start as the identity (the temporal convolutions' last layer is zero in diffusers already; the
temporal transformers' `proj_out` is zeroed here), so the inflated model makes exactly the picture
model's frames until it is tuned (t2v.training.tune).

Two catches of the 3D layout: its blocks read `attention_head_dim` as the head dimension where the
2D blocks read it as the number of heads (so the 2D model's head dimension must be the same in every
block: SD 2.x's 64 is, SD 1.x's 8 heads at every level are not), and its spatial transformers always
use linear projections (SD 1.x's 1x1-convolution projections are squeezed to linear).

`sparse_causal_attention` switches the spatial self-attention of a video UNet to Tune-A-Video's
sparse-causal attention: frame i attends to the tokens of frame 0 and frame i-1 (frame 0 to itself).
It has no weights of its own; a tuned model's `t2v_model.json` records it.

Example:
    >>> unet3d = inflate_unet(StableDiffusionPipeline.from_pretrained(...).unet)
    >>> sparse_causal_attention(unet3d)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel, UNet3DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel


BLOCKS_3D = {
    "CrossAttnDownBlock2D": "CrossAttnDownBlock3D",
    "DownBlock2D": "DownBlock3D",
    "CrossAttnUpBlock2D": "CrossAttnUpBlock3D",
    "UpBlock2D": "UpBlock3D",
}
# 2D config entries the 3D layout has no choice for: the value it builds with (None: off)
FIXED_IN_3D = {
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "only_cross_attention": False,
    "dropout": 0.0,
    "transformer_layers_per_block": 1,
    "reverse_transformer_layers_per_block": None,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "dual_cross_attention": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "addition_time_embed_dim": None,
    "num_class_embeds": None,
    "upcast_attention": False,
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "projection_class_embeddings_input_dim": None,
    "attention_type": "default",
    "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None,
    "cross_attention_norm": None,
}
# the same 2D config entries, kept as they are in the 3D config
COPIED = (
    "sample_size", "in_channels", "out_channels", "block_out_channels", "downsample_padding",
    "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps", "time_cond_proj_dim",
)  # fmt: skip
TEMPORAL_PREFIXES = ("transformer_in.",)
TEMPORAL_PARTS = (".temp_convs.", ".temp_attentions.")


def _one(config, key: str):
    """A per-block 2D setting that must be the same in every block, as one value."""
    value = config[key]
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(
                f"cannot inflate: {key}={tuple(value)} differs between blocks; the 3D layout has one value"
            )
        value = value[0]
    return value


def _head_dim(config) -> int:
    """The 2D model's attention head dimension, which must be the same in all its attention blocks."""
    heads = config["num_attention_heads"] or config["attention_head_dim"]
    channels = config["block_out_channels"]
    heads = (heads,) * len(channels) if isinstance(heads, int) else tuple(heads)
    with_attention = [i for i, t in enumerate(config["down_block_types"]) if t.startswith("CrossAttn")]
    dims = {channels[i] / heads[i] for i in with_attention + [len(channels) - 1]}  # + the mid block
    if len(dims) != 1 or not next(iter(dims)).is_integer():
        per_block = ", ".join(f"{c}/{h}" for c, h in zip(channels, heads))
        raise ValueError(
            f"cannot inflate: the attention head dimension (channels/heads: {per_block}) must be one whole number "
            "in every attention block; diffusers' UNet3DConditionModel has one (attention_head_dim)"
        )
    return int(dims.pop())


def unet3d_config(config) -> dict:
    """The `UNet3DConditionModel` arguments of a `UNet2DConditionModel` config; ValueError naming what the 3D
    layout cannot hold."""
    config = dict(config)
    for key, fixed in FIXED_IN_3D.items():
        value = config.get(key, fixed)
        if key in ("only_cross_attention", "transformer_layers_per_block") and isinstance(value, (list, tuple)):
            value = value[0] if len(set(value)) == 1 else value
        if key == "mid_block_only_cross_attention" and value is False:
            value = None
        if value != fixed:
            raise ValueError(
                f"cannot inflate: {key}={value!r} is not supported by UNet3DConditionModel (needs {fixed!r})"
            )
    types = list(config["down_block_types"]) + list(config["up_block_types"])
    unknown = sorted({t for t in types if t not in BLOCKS_3D})
    if unknown:
        raise ValueError(
            f"cannot inflate block types {unknown}: UNet3DConditionModel has 3D versions of {list(BLOCKS_3D)}"
        )
    return {
        **{key: config[key] for key in COPIED},
        "down_block_types": tuple(BLOCKS_3D[t] for t in config["down_block_types"]),
        "up_block_types": tuple(BLOCKS_3D[t] for t in config["up_block_types"]),
        "layers_per_block": _one(config, "layers_per_block"),
        "cross_attention_dim": _one(config, "cross_attention_dim"),
        "attention_head_dim": _head_dim(config),
    }


def is_temporal(name: str) -> bool:
    """Whether a `UNet3DConditionModel` parameter or module name belongs to a temporal layer."""
    return name.startswith(TEMPORAL_PREFIXES) or any(p in name for p in TEMPORAL_PARTS)


def inflate_unet(unet2d: UNet2DConditionModel) -> UNet3DConditionModel:
    """A `UNet3DConditionModel` that makes, frame by frame, exactly what `unet2d` makes: the 2D weights
    (1x1-conv projections squeezed to linear), temporal convolutions and temporal transformers that
    start as the identity. On `unet2d`'s device and dtype; `unet2d` is not changed."""
    if not isinstance(unet2d, UNet2DConditionModel):
        raise ValueError(f"inflate_unet needs a UNet2DConditionModel, got {type(unet2d).__name__}")
    unet3d = UNet3DConditionModel(**unet3d_config(unet2d.config))
    state = {}
    for key, value in unet2d.state_dict().items():
        if ".attentions." in key and (".proj_in." in key or ".proj_out." in key) and value.ndim == 4:
            value = value[:, :, 0, 0]  # SD 1.x: 1x1 convolution -> linear
        state[key] = value
    missing, unexpected = unet3d.load_state_dict(state, strict=False)
    spatial_missing = [k for k in missing if not is_temporal(k)]
    if unexpected or spatial_missing:
        raise ValueError(
            f"cannot inflate: weights without a place {unexpected[:3]}, places without weights {spatial_missing[:3]}"
        )
    with torch.no_grad():
        for module in unet3d.modules():
            if isinstance(module, TransformerTemporalModel):  # its output is added to its input: 0 -> identity
                module.proj_out.weight.zero_()
                module.proj_out.bias.zero_()
    unet3d = unet3d.to(unet2d.device)
    return unet3d if unet2d.dtype == unet3d.dtype else unet3d.to(unet2d.dtype)


# ---------------------------------------------------------------- sparse-causal attention
class SparseCausalAttnProcessor:
    """Self-attention over the tokens [B*F, N, C] of each video's frames in which frame i attends to the
    tokens of frame 0 and frame i-1 (frame 0 to itself), as Tune-A-Video. `num_frames` is set by the
    UNet's forward pre-hook (see `sparse_causal_attention`) before each call."""

    def __init__(self):
        self.num_frames: int | None = None

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("sparse-causal attention is a self-attention without mask (set it on attn1 only)")
        frames = self.num_frames
        batch, tokens, _ = hidden_states.shape
        if not frames or batch % frames:
            raise ValueError(f"a batch of {batch} frames is not a whole number of videos of {frames} frames")
        residual = hidden_states
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        previous = (torch.arange(frames, device=key.device) - 1).clamp(min=0)

        def frame0_and_previous(x):  # [B*F, N, D] -> [B*F, 2N, D]: each frame's keys (values) of frames 0, i-1
            x = x.reshape(batch // frames, frames, tokens, -1)
            return torch.cat([x[:, [0] * frames], x[:, previous]], dim=2).reshape(batch, 2 * tokens, -1)

        key, value = frame0_and_previous(key), frame0_and_previous(value)

        def heads(x):
            return x.view(batch, x.shape[1], attn.heads, -1).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).flatten(2).to(query.dtype)))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def spatial_self_attention_names(unet) -> list[str]:
    """Processor names of the spatial self-attentions (attn1 of the per-frame transformers)."""
    return [n for n in unet.attn_processors if ".attentions." in n and n.endswith("attn1.processor")]


def _record_frames(unet, args, kwargs) -> None:
    """Forward pre-hook: give the sparse-causal processors the frame count of this call's sample [B, C, F, h, w]."""
    sample = args[0] if args else kwargs.get("sample")
    frames = int(sample.shape[2]) if sample is not None and sample.ndim == 5 else None
    for processor in unet.attn_processors.values():
        if isinstance(processor, SparseCausalAttnProcessor):
            processor.num_frames = frames


def has_sparse_causal_attention(unet) -> bool:
    return any(isinstance(p, SparseCausalAttnProcessor) for p in unet.attn_processors.values())


def sparse_causal_attention(unet: UNet3DConditionModel, on: bool = True) -> UNet3DConditionModel:
    """Switch Tune-A-Video's sparse-causal attention on (or off: ordinary self-attention) in the spatial
    self-attention of a video UNet, in place. Other attention layers keep their processors."""
    if not isinstance(unet, UNet3DConditionModel):
        raise ValueError(f"sparse-causal attention needs a UNet3DConditionModel, got {type(unet).__name__}")
    processors = dict(unet.attn_processors)
    names = spatial_self_attention_names(unet)
    foreign = sorted({type(processors[n]).__name__ for n in names} - {"AttnProcessor2_0", "AttnProcessor"})
    if on and foreign and foreign != ["SparseCausalAttnProcessor"]:
        raise ValueError(
            f"the spatial self-attention already has processors {foreign}; sparse-causal would replace them"
        )
    for name in names:
        processors[name] = SparseCausalAttnProcessor() if on else AttnProcessor2_0()
    unet.set_attn_processor(processors)
    hook = getattr(unet, "_t2v_sparse_causal_hook", None)
    if hook is not None:
        hook.remove()
    unet._t2v_sparse_causal_hook = unet.register_forward_pre_hook(_record_frames, with_kwargs=True) if on else None
    return unet

"""Inflating a picture UNet to the video layout, and sparse-causal attention (t2v.models.inflate)."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from tiny_tune import tiny_inflated, tiny_unet2d

from t2v.models.inflate import (
    SparseCausalAttnProcessor,
    has_sparse_causal_attention,
    inflate_unet,
    sparse_causal_attention,
    unet3d_config,
)
from t2v.models.temporal_position import add_frame_positions


FRAMES = 4


def per_frame(unet2d, sample, embeds):
    """The picture model on each frame of sample [B, C, F, h, w], as [B, C, F, h, w]."""
    b, c, f, h, w = sample.shape
    frames = sample.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    out = unet2d(frames, 10, encoder_hidden_states=embeds.repeat_interleave(f, 0)).sample
    return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


@pytest.mark.parametrize("linear", [True, False], ids=["linear-projection", "conv-projection"])
@torch.no_grad()
def test_inflated_model_makes_the_picture_models_frames(linear):
    unet2d = tiny_unet2d(use_linear_projection=linear)
    unet3d = inflate_unet(unet2d).eval()
    assert unet3d.config.down_block_types == ("CrossAttnDownBlock3D", "DownBlock3D")
    assert unet3d.config.attention_head_dim == 4  # 8/2 and 16/4: the 2D heads, read as a head dimension
    sample, embeds = torch.randn(2, 4, FRAMES, 8, 8), torch.randn(2, 5, 16)
    video = unet3d(sample, 10, encoder_hidden_states=embeds).sample
    torch.testing.assert_close(video, per_frame(unet2d, sample, embeds), atol=1e-5, rtol=0)  # measured: 7e-7


def test_temporal_layers_start_as_the_identity_and_2d_weights_are_copied():
    unet2d = tiny_unet2d(use_linear_projection=False)
    unet3d = inflate_unet(unet2d)
    temporal = [m for m in unet3d.modules() if isinstance(m, TransformerTemporalModel)]
    assert len(temporal) == 5  # transformer_in, then one per spatial transformer (down 1, mid 1, up 2)
    assert all(not m.proj_out.weight.any() and not m.proj_out.bias.any() for m in temporal)
    assert all(not block.conv4[-1].weight.any() for block in unet3d.modules() if hasattr(block, "conv4"))
    conv = unet2d.down_blocks[0].attentions[0].proj_in.weight
    assert conv.shape[2:] == (1, 1)
    torch.testing.assert_close(unet3d.down_blocks[0].attentions[0].proj_in.weight, conv[:, :, 0, 0])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"addition_embed_type": "text_time"}, "addition_embed_type='text_time' is not supported"),
        ({"class_embed_type": "timestep"}, "class_embed_type='timestep'"),
        ({"down_block_types": ("AttnDownBlock2D", "DownBlock2D")}, r"block types \['AttnDownBlock2D'\]"),
        ({"mid_block_type": None}, "mid_block_type=None"),
        ({"attention_head_dim": (2, 2)}, r"head dimension \(channels/heads: 8/2, 16/2\) must be one whole number"),
        ({"transformer_layers_per_block": 2}, "transformer_layers_per_block=2"),
        ({"layers_per_block": (1, 2)}, r"layers_per_block=\(1, 2\) differs between blocks"),
        ({"center_input_sample": True}, "center_input_sample=True"),
    ],
)
def test_what_the_3d_layout_cannot_hold_is_named(change, message):
    config = {**tiny_unet2d().config, **change}
    with pytest.raises(ValueError, match=message):
        unet3d_config(config)


def test_only_2d_unets_inflate():
    with pytest.raises(ValueError, match="needs a UNet2DConditionModel, got UNet3DConditionModel"):
        inflate_unet(tiny_inflated())


# ---------------------------------------------------------------- sparse-causal attention
def attention_of_frames(x, num_frames):
    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4, processor=SparseCausalAttnProcessor())
    attn.processor.num_frames = num_frames
    with torch.no_grad():
        return attn(x)


def test_frame_i_attends_to_frame_0_and_frame_i_minus_1_only():
    x = torch.randn(2 * FRAMES, 6, 8)  # two videos of 4 frames, 6 tokens each
    base = attention_of_frames(x, FRAMES)
    for j in range(FRAMES):
        moved = x.clone()
        moved[j] += 1.0  # perturb frame j of the first video
        changed = (attention_of_frames(moved, FRAMES) - base).abs().amax(dim=(1, 2)) > 1e-6
        expected = [i == j or j == 0 or j == i - 1 for i in range(FRAMES)] + [False] * FRAMES
        assert changed.tolist() == expected, (j, changed.tolist())


def test_equal_frames_give_ordinary_self_attention():
    x = torch.randn(1, 6, 8).repeat(FRAMES, 1, 1)
    torch.manual_seed(0)
    plain = Attention(query_dim=8, heads=2, dim_head=4, processor=AttnProcessor2_0())
    with torch.no_grad():
        torch.testing.assert_close(attention_of_frames(x, FRAMES), plain(x), atol=1e-6, rtol=0)


@torch.no_grad()
def test_in_the_unet_frames_depend_on_earlier_frames_only():
    unet = tiny_inflated(sparse_causal=True).eval()
    assert has_sparse_causal_attention(unet)
    sample, embeds = torch.randn(2, 4, FRAMES, 8, 8), torch.randn(2, 5, 16)  # a batch of 2: frames per video
    base = unet(sample, 10, encoder_hidden_states=embeds).sample
    moved = sample.clone()
    moved[:, :, 2] += 1.0
    out = unet(moved, 10, encoder_hidden_states=embeds).sample
    assert torch.equal(out[:, :, :2], base[:, :, :2])  # frames 0 and 1 do not see frame 2
    assert (out[:, :, 2:] - base[:, :, 2:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-4


@torch.no_grad()
def test_equal_frames_through_the_unet_match_the_picture_model_and_it_switches_off():
    unet2d = tiny_unet2d()
    unet = sparse_causal_attention(inflate_unet(unet2d)).eval()
    sample, embeds = torch.randn(1, 4, 1, 8, 8).repeat(1, 1, FRAMES, 1, 1), torch.randn(1, 5, 16)
    picture = per_frame(unet2d, sample, embeds)
    torch.testing.assert_close(unet(sample, 10, encoder_hidden_states=embeds).sample, picture, atol=1e-5, rtol=0)
    sparse_causal_attention(unet, on=False)
    assert not has_sparse_causal_attention(unet) and unet._t2v_sparse_causal_hook is None
    varied = torch.randn(1, 4, FRAMES, 8, 8)
    torch.testing.assert_close(
        unet(varied, 10, encoder_hidden_states=embeds).sample, per_frame(unet2d, varied, embeds), atol=1e-5, rtol=0
    )


def test_sparse_causal_attention_refuses_other_spatial_processors():
    with pytest.raises(ValueError, match="needs a UNet3DConditionModel, got UNet2DConditionModel"):
        sparse_causal_attention(tiny_unet2d())
    unet = add_frame_positions(tiny_inflated(sparse_causal=False), "sinusoidal+spatial")
    with pytest.raises(ValueError, match=r"already has processors \['SpatialFramePositionProcessor'\]"):
        sparse_causal_attention(unet)

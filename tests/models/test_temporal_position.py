"""Frame positions in temporal attention: order-aware, no new weights, carried by save/load and slicing."""

import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from tiny import tiny_pipeline, tiny_unet

from t2v.models.loading import ModelError, save_model
from t2v.models.temporal_position import (
    FramePositionProcessor,
    SpatialFramePositionProcessor,
    add_frame_positions,
    frame_grid_positions,
    frame_position_kind,
    has_frame_positions,
    sinusoidal_positions,
    spatial_attention_names,
    temporal_attention_names,
)
from t2v.pipelines.text_to_video import load_pipeline


def test_sinusoidal_positions_values():
    pe = sinusoidal_positions(16, 6)
    assert pe.shape == (16, 6)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))  # sin 0, cos 0
    assert torch.allclose(pe[3, :2], torch.tensor([torch.sin(torch.tensor(3.0)), torch.cos(torch.tensor(3.0))]))
    assert len({tuple(row.tolist()) for row in pe}) == 16  # every frame its own code
    assert sinusoidal_positions(5, 7).shape == (5, 7)  # odd widths too


def test_only_temporal_self_attention_gets_positions():
    unet = add_frame_positions(tiny_unet())
    names = temporal_attention_names(unet)
    # transformer_in + one temporal block per cross-attention block (down 0, mid, up 1 with 2 layers)
    assert len(names) == 5 and all(n.endswith("attn1.processor") for n in names)
    for name, proc in unet.attn_processors.items():
        assert isinstance(proc, FramePositionProcessor) == (name in names), name
    assert has_frame_positions(unet)
    add_frame_positions(unet, None)
    assert not has_frame_positions(unet)


def test_spatial_kind_positions_every_attention_and_switches_back():
    unet = tiny_unet().eval()
    sample = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        add_frame_positions(unet, "sinusoidal")
        temporal_only = unet(sample, 10, encoder_hidden_states=cond).sample
        add_frame_positions(unet, "sinusoidal+spatial")
        assert frame_position_kind(unet) == "sinusoidal+spatial"
        spatial = spatial_attention_names(unet)
        # the down, mid and up transformers each have a self- and a cross-attention
        assert len(spatial) == 8 and {n.rsplit(".", 2)[-2] for n in spatial} == {"attn1", "attn2"}
        for name, proc in unet.attn_processors.items():
            assert isinstance(proc, SpatialFramePositionProcessor) == (name in spatial), name
        both = unet(sample, 10, encoder_hidden_states=cond).sample
        assert unet.attn_processors[spatial[0]].frames == {"n": 4, "hw": (8, 8)}  # the UNet's pre-hook told it
        add_frame_positions(unet, "sinusoidal")
        assert frame_position_kind(unet) == "sinusoidal" and unet._t2v_frames_hook is None
        again = unet(sample, 10, encoder_hidden_states=cond).sample
    assert not torch.allclose(temporal_only, both, atol=1e-4)
    assert torch.equal(temporal_only, again)


def test_spatial_positions_tell_frames_and_places_apart():
    """Identical frames of identical pixels get different spatial-attention outputs by frame index and
    by position, the same in every video; codes sit in separate thirds of the channels."""
    from diffusers.models.attention_processor import Attention

    pe = frame_grid_positions(3, 2, 4, 8)
    assert pe.shape == (3, 8, 8)
    assert torch.equal(
        pe[:, :, :4], sinusoidal_positions(3, 4)[:, None, :].expand(3, 8, 4)
    )  # frames: 8 - 2 * (8 // 3) channels
    assert torch.equal(pe[1, :, 4:6].reshape(2, 4, 2)[:, 0], sinusoidal_positions(2, 2))  # rows
    assert torch.equal(pe[2, :, 6:8].reshape(2, 4, 2)[0], sinusoidal_positions(4, 2))  # columns
    torch.manual_seed(0)
    attn = Attention(8, heads=2, dim_head=4).eval()
    x = torch.randn(1, 1, 8).expand(2 * 3, 4 * 4, 8)  # 2 videos x 3 frames of a 4x4 latent, all tokens equal
    attn.set_processor(SpatialFramePositionProcessor({"n": 3, "hw": (8, 8)}))  # a level-1 attention of an 8x8 latent
    with torch.no_grad():
        out = attn(x)
        attn.set_processor(SpatialFramePositionProcessor({}))  # frame count unknown: plain attention
        plain = attn(x)
    assert not torch.allclose(out[0], out[1], atol=1e-4) and not torch.allclose(out[1], out[2], atol=1e-4)
    assert not torch.allclose(out[0, 0], out[0, 1], atol=1e-4) and not torch.allclose(out[0, 0], out[0, 4], atol=1e-4)
    assert torch.allclose(out[:3], out[3:])
    assert torch.allclose(plain[0], plain[1]) and torch.allclose(plain[0, 0], plain[0, 5])
    # self-attention writes each token's code into the residual stream; cross-attention does not
    with torch.no_grad():
        attn.to_out[0].weight.zero_(), attn.to_out[0].bias.zero_()
    attn.set_processor(SpatialFramePositionProcessor({"n": 3, "hw": (8, 8)}))
    with torch.no_grad():
        assert torch.allclose(attn(x), frame_grid_positions(3, 4, 4, 8).repeat(2, 1, 1))
        cross = Attention(8, cross_attention_dim=6, heads=2, dim_head=4)
        cross.to_out[0].weight.zero_(), cross.to_out[0].bias.zero_()
        cross.set_processor(SpatialFramePositionProcessor({"n": 3, "hw": (8, 8)}))
        assert torch.equal(cross(x, encoder_hidden_states=torch.randn(6, 5, 6)), torch.zeros(6, 16, 8))
    with pytest.raises(RuntimeError, match="does not match"):
        attn(torch.randn(6, 7, 8))


def test_positions_make_temporal_attention_order_aware():
    """Without positions, shuffling the frames shuffles the temporal transformer's output the same way
    (it cannot tell frame order); with them it does not."""
    unet = tiny_unet().eval()
    frames, channels = 6, 8
    x = torch.randn(frames, channels, 4, 4, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])

    def run(inp):
        with torch.no_grad():
            return unet.transformer_in(inp, num_frames=frames).sample

    assert torch.allclose(run(x)[perm], run(x[perm]), atol=1e-5)
    add_frame_positions(unet)
    assert not torch.allclose(run(x)[perm], run(x[perm]), atol=1e-3)


def test_no_new_weights_and_switching_off_restores_the_output():
    unet = tiny_unet().eval()
    keys = set(unet.state_dict())
    sample = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = unet(sample, 10, encoder_hidden_states=cond).sample
        add_frame_positions(unet)
        assert set(unet.state_dict()) == keys
        positioned = unet(sample, 10, encoder_hidden_states=cond).sample
        add_frame_positions(unet, None)
        again = unet(sample, 10, encoder_hidden_states=cond).sample
    assert not torch.allclose(plain, positioned, atol=1e-4)
    assert torch.equal(plain, again)


def test_bad_kind_and_models_without_temporal_attention():
    with pytest.raises(ValueError, match="temporal_position must be one of"):
        add_frame_positions(tiny_unet(), "learned")
    torch.manual_seed(0)
    unet2d = UNet2DConditionModel(
        block_out_channels=(8, 8),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=2,
    )
    with pytest.raises(ValueError, match="no temporal attention"):
        add_frame_positions(unet2d)


def test_saved_model_loads_with_positions_and_slicing_keeps_them(tmp_path):
    pipe = tiny_pipeline(tmp_path)
    add_frame_positions(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    before = pipe("a red circle", num_frames=4, num_inference_steps=2, seed=0).frames
    save_model(pipe, tmp_path / "m", meta={"temporal_position": "sinusoidal"})
    loaded = load_pipeline(tmp_path / "m", device="cpu")
    loaded.set_progress_bar_config(disable=True)
    assert has_frame_positions(loaded.unet)
    assert torch.allclose(
        torch.from_numpy(before),
        torch.from_numpy(loaded("a red circle", num_frames=4, num_inference_steps=2, seed=0).frames),
        atol=1e-5,
    )
    loaded.enable_attention_slicing(1)
    assert has_frame_positions(loaded.unet)
    loaded.disable_attention_slicing()
    assert has_frame_positions(loaded.unet)
    # the spatial kind too, and slicing keeps the kind
    save_model(pipe, tmp_path / "s", meta={"temporal_position": "sinusoidal+spatial"})
    spatial = load_pipeline(tmp_path / "s", device="cpu")
    assert frame_position_kind(spatial.unet) == "sinusoidal+spatial"
    spatial.enable_attention_slicing(1)
    assert frame_position_kind(spatial.unet) == "sinusoidal+spatial"
    # an unknown kind in t2v_model.json is a clear load error, not a silent model without positions
    (tmp_path / "m" / "t2v_model.json").write_text(json.dumps({"temporal_position": "learned"}))
    with pytest.raises(ModelError, match="t2v_model.json.*temporal_position must be one of"):
        load_pipeline(tmp_path / "m", device="cpu")

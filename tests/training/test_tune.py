"""One-shot video tuning (t2v.training.tune) on tiny random components."""

import json

import pytest
import torch
from tiny_tune import fixed_loss, tiny_clip, tiny_inflated, tiny_parts, tiny_unet2d

from t2v.training.tune import TUNING_ATTRIBUTE, tune, tuned_parameter_names


CAPTION = "a red square moves right"


def run(unet, parts, video=None, caption=CAPTION, **kwargs):
    kwargs = {"steps": 3, "lr": 1e-3, "progress": False, **kwargs}
    video = tiny_clip() if video is None else video
    p = parts
    return tune(unet, p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler"], video, caption, **kwargs)


def snapshot(*modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def test_only_the_tuned_parameters_change():
    parts, unet = tiny_parts(), tiny_inflated()
    before = snapshot(unet, parts["vae"], parts["text_encoder"])
    unet = run(unet, parts)
    after = snapshot(unet, parts["vae"], parts["text_encoder"])
    names = set(tuned_parameter_names(unet))
    changed = {k for k, v in before[0].items() if not torch.equal(v, after[0][k])}
    assert changed == names  # all of them move (AdamW's decay moves even those whose gradient is still 0)
    assert {n.rsplit(".", 2)[-2] for n in names if ".attentions." in n} == {"to_q"}
    assert any(".temp_attentions." in n for n in names) and any(n.startswith("transformer_in.") for n in names)
    assert not any(".temp_convs." in n for n in names)
    for frozen_before, frozen_after in zip(before[1:], after[1:]):
        assert all(torch.equal(v, frozen_after[k]) for k, v in frozen_before.items())
    assert not any(p.requires_grad for p in unet.parameters()) and not unet.training


def test_the_loss_goes_down_on_one_clip():
    parts, unet, video = tiny_parts(), tiny_inflated(), tiny_clip()
    before = fixed_loss(unet, parts, video, CAPTION)
    unet = run(unet, parts, video, steps=30, lr=3e-3)
    after = fixed_loss(unet, parts, video, CAPTION)
    assert after < 0.9 * before, (before, after)  # measured: 1.11 -> 0.90


def test_a_resumed_run_continues_at_the_saved_step_and_matches_an_uninterrupted_one(tmp_path):
    parts = tiny_parts()
    straight = run(tiny_inflated(), parts, steps=4)
    run(tiny_inflated(), parts, steps=2, output_dir=tmp_path)  # "interrupted" after 2 steps
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 2
    unet, calls = tiny_inflated(), []
    unet.register_forward_pre_hook(lambda *args: calls.append(1))
    resumed = run(unet, parts, steps=4, output_dir=tmp_path)
    assert len(calls) == 2  # steps 3 and 4 only
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 4
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in straight.state_dict().items())  # bit-identical
    assert getattr(resumed, TUNING_ATTRIBUTE)["steps"] == 4
    with pytest.raises(ValueError, match="was made for another clip or caption .'a red square moves right'"):
        run(tiny_inflated(), parts, caption="a blue circle", steps=5, output_dir=tmp_path)


def test_gradient_checkpointing_gives_the_same_weights():
    parts = tiny_parts()
    plain = run(tiny_inflated(), parts, steps=2)
    checkpointed = run(tiny_inflated(), parts, steps=2, gradient_checkpointing=True)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(checkpointed.state_dict()[name], value, atol=1e-6, rtol=0)
    assert "forward" not in vars(checkpointed.down_blocks[0])  # the blocks' own forward is back


def test_the_record_says_what_was_tuned():
    unet = run(tiny_inflated(), tiny_parts(), steps=1, seed=7)
    record = getattr(unet, TUNING_ATTRIBUTE)
    assert record["caption"] == CAPTION and record["frames"] == 4 and record["steps"] == 1 and record["seed"] == 7
    assert record["sparse_causal_attention"] is True and "attn1.to_q" in record["trained"]
    assert record["trained_parameters"] == sum(p.numel() for n, p in unet.named_parameters()
                                               if n in tuned_parameter_names(unet))  # fmt: skip


@pytest.mark.parametrize(
    "video, kwargs, message",
    [
        (tiny_clip(1), {}, "at least 2 frames to tune on, got 1"),
        (tiny_clip(4, size=15), {}, "frame size 15x15 must be a multiple of the VAE factor 2"),
        (tiny_clip(), {"num_frames": 8}, "video has 4 frames but num_frames=8 was asked for"),
        (tiny_clip() * 127.5 + 127.5, {}, r"values must be in \[-1, 1\], got \[25.5, 242\]"),
        (tiny_clip()[0], {}, r"video must be a tensor \[F, 3, H, W\]"),
        (tiny_clip(), {"caption": "  "}, "caption must be a non-empty string, got '  '"),
        (tiny_clip(), {"steps": 0}, "steps must be an integer >= 1, got 0"),
        (tiny_clip(), {"mixed_precision": "fp8"}, "mixed_precision must be one of"),
    ],
)
def test_clear_errors(video, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(tiny_inflated(), tiny_parts(), video, **kwargs)


def test_a_picture_unet_is_refused():
    with pytest.raises(ValueError, match="needs a UNet3DConditionModel .see inflate_unet., got UNet2DConditionModel"):
        run(tiny_unet2d(), tiny_parts())

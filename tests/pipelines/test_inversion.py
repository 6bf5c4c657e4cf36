"""DDIM inversion (t2v.pipelines.inversion) and a tuned model's folder (t2v.training.tune.save_tuned)."""

import json

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from tiny_tune import tiny_clip, tiny_inflated, tiny_parts

from t2v.models.inflate import has_sparse_causal_attention
from t2v.pipelines.inversion import (
    INVERSION_FILE,
    ddim_invert,
    ddim_schedulers,
    encode_video,
    load_inversion,
    load_tuned,
)
from t2v.pipelines.text_to_video import TextToVideoPipeline
from t2v.training.tune import TUNING_ATTRIBUTE, save_tuned


STEPS = 20


def tiny_pipe(output_scale: float = 1.0) -> TextToVideoPipeline:
    """The tiny inflated UNet (sparse-causal) with DDIM; its noise prediction scaled by output_scale."""
    unet = tiny_inflated().eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(output_scale)
        unet.conv_out.bias.mul_(output_scale)
    pipe = TextToVideoPipeline(unet=unet, **tiny_parts())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_back(pipe, latents, embeds, steps=STEPS):
    f, (h, w) = latents.shape[2], latents.shape[3:]
    return pipe(prompt_embeds=embeds, latents=latents, num_frames=f, height=2 * h, width=2 * w,
                num_inference_steps=steps, guidance_scale=1.0, output_type="latent").frames  # fmt: skip


def setup(output_scale=1.0):
    pipe = tiny_pipe(output_scale)
    embeds, _ = pipe.encode_prompt("", "cpu", 1, False)  # Tune-A-Video inverts with the empty prompt
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    return pipe, embeds, latents


def test_with_no_noise_prediction_inversion_scales_by_the_schedule_and_sampling_undoes_it_exactly():
    pipe, embeds, latents = setup(output_scale=0.0)
    inverted = ddim_invert(pipe, latents, embeds, STEPS)
    last = pipe.scheduler.alphas_cumprod[1000 - 1000 // STEPS]  # DDIM's first timestep, 950
    torch.testing.assert_close(inverted, latents * last.sqrt(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sample_back(pipe, inverted, embeds), latents, atol=1e-5, rtol=1e-5)


def test_inverting_then_sampling_back_reconstructs_the_latents():
    """A smooth noise predictor (the tiny UNet's output x0.1; DDIM inversion assumes eps(x_t) ~ eps(x_t-1),
    as for trained models) gives the latents back closely; sampling from fresh noise does not."""
    pipe, embeds, latents = setup(output_scale=0.1)
    back = sample_back(pipe, ddim_invert(pipe, latents, embeds, STEPS), embeds)
    fresh = sample_back(pipe, torch.randn_like(latents), embeds)
    error, fresh_error = (back - latents).abs(), (fresh - latents).abs().mean()
    assert error.mean() < 0.05 and error.max() < 0.3, (error.mean(), error.max())  # measured: 0.023, 0.13
    assert error.mean() < 0.01 * fresh_error  # measured: fresh noise is off by 8.9 on average


def test_a_random_unet_still_reconstructs_far_better_than_fresh_noise():
    pipe, embeds, latents = setup()
    back = sample_back(pipe, ddim_invert(pipe, latents, embeds, 10), embeds, 10)
    fresh = sample_back(pipe, torch.randn_like(latents), embeds, 10)
    error, fresh_error = (back - latents).abs().mean(), (fresh - latents).abs().mean()
    assert error < 0.2 * fresh_error, (error, fresh_error)  # measured: 0.68 vs 7.2


def test_ddim_schedulers_pair_timesteps_from_any_config():
    config = DPMSolverMultistepScheduler(timestep_spacing="linspace", prediction_type="v_prediction").config
    sampler, inverse = ddim_schedulers(config)
    assert sampler.config.timestep_spacing == inverse.config.timestep_spacing == "leading"
    assert sampler.config.prediction_type == "v_prediction" and sampler.config.clip_sample is False
    sampler.set_timesteps(STEPS)
    inverse.set_timesteps(STEPS)
    assert torch.equal(inverse.timesteps, sampler.timesteps.flip(0))


def test_invert_takes_the_pipelines_components_and_checks_its_inputs():
    pipe, embeds, latents = setup()
    torch.testing.assert_close(ddim_invert(pipe.components, latents, embeds, 2), ddim_invert(pipe, latents, embeds, 2))
    with pytest.raises(ValueError, match=r"latents must be \[B, C, F, h, w\], got shape \(4, 4, 8, 8\)"):
        ddim_invert(pipe, latents[0], embeds, 2)
    with pytest.raises(ValueError, match=r"prompt_embeds must be \[1 or 1, T, D\], got shape \(2, 24, 16\)"):
        ddim_invert(pipe, latents, embeds.repeat(2, 1, 1), 2)
    with pytest.raises(ValueError, match="num_inference_steps must be an integer >= 1, got 0"):
        ddim_invert(pipe, latents, embeds, 0)


def test_a_tuned_model_saves_loads_and_generates_from_its_inversion(tmp_path):
    pipe = tiny_pipe()
    setattr(pipe.unet, TUNING_ATTRIBUTE, {"caption": "a red square", "steps": 3})  # as tune() leaves it
    embeds, _ = pipe.encode_prompt("", "cpu", 1, False)
    inverted = ddim_invert(pipe, encode_video(pipe.vae, tiny_clip()), embeds, 4)
    parts = {k: v for k, v in pipe.components.items() if k != "unet"}
    path = save_tuned(tmp_path / "tuned", pipe.unet, **parts, inversion_latents=inverted, inversion_steps=4,
                      meta={"source_frames": 12})  # fmt: skip
    meta = json.loads((path / "t2v_model.json").read_text())
    assert meta["tuned"] == {"caption": "a red square", "steps": 3, "source_frames": 12}
    assert meta["spatial_attention"] == "sparse-causal"
    assert meta["inversion"] == {"file": INVERSION_FILE, "shape": [1, 4, 4, 8, 8], "num_inference_steps": 4}
    torch.testing.assert_close(load_inversion(path), inverted)

    call = {"prompt": "a red square", "num_frames": 4, "height": 16, "width": 16, "num_inference_steps": 4,
            "guidance_scale": 1.0, "output_type": "latent"}  # fmt: skip
    expected = pipe(latents=inverted, **call).frames
    loaded = TextToVideoPipeline.from_pretrained(path)  # diffusers' way: ordinary self-attention
    assert not has_sparse_causal_attention(loaded.unet)
    assert loaded(latents=load_inversion(path), **call).frames.shape == expected.shape
    tuned, latents = load_tuned(path)  # t2v's way: as tuned
    assert has_sparse_causal_attention(tuned.unet)
    tuned.set_progress_bar_config(disable=True)
    torch.testing.assert_close(tuned(latents=latents, **call).frames, expected, atol=1e-5, rtol=0)


def test_a_model_without_inversion_has_none(tmp_path):
    pipe = tiny_pipe()
    parts = {k: v for k, v in pipe.components.items() if k != "unet"}
    (tmp_path / "m" / "inversion").mkdir(parents=True)
    (tmp_path / "m" / INVERSION_FILE).write_bytes(b"stale")  # from an earlier save: removed
    path = save_tuned(tmp_path / "m", pipe.unet, **parts)
    assert load_inversion(path) is None and "inversion" not in json.loads((path / "t2v_model.json").read_text())

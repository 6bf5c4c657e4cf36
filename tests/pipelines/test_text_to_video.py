"""TextToVideoPipeline on tiny random components: shapes, determinism, guidance, schedulers, options."""

import numpy as np
import pytest
import torch

from t2v.models.defaults import ModelDefaults
from t2v.pipelines.schedulers import SCHEDULERS, make_scheduler
from t2v.pipelines.text_to_video import MAX_FRAMES, TextToVideoPipeline


FAST = {"num_frames": 3, "num_inference_steps": 2}


def test_output_shapes_and_types(pipe):
    out = pipe("a red circle", **FAST, seed=0)
    assert out.frames.shape == (1, 3, 32, 32, 3) and out.frames.dtype == np.float32
    assert 0 <= out.frames.min() and out.frames.max() <= 1
    pt = pipe("a red circle", **FAST, seed=0, output_type="pt").frames
    assert isinstance(pt, torch.Tensor) and pt.shape == (1, 3, 3, 32, 32)
    np.testing.assert_allclose(pt.permute(0, 1, 3, 4, 2).numpy(), out.frames, atol=1e-6)
    pil = pipe("a red circle", **FAST, seed=0, output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == 3 and pil[0][0].size == (32, 32)
    lat = pipe("a red circle", **FAST, seed=0, output_type="latent").frames
    assert lat.shape == (1, 4, 3, 16, 16)


def test_non_square_and_default_size(pipe):
    assert pipe("x", **FAST, height=16, width=48, seed=0).frames.shape == (1, 3, 16, 48, 3)
    assert pipe("x", **FAST, seed=0).frames.shape[2:4] == (pipe.default_size, pipe.default_size)


def test_same_seed_same_video_other_seed_different(pipe):
    a = pipe("a red circle", **FAST, seed=1).frames
    b = pipe("a red circle", **FAST, seed=1).frames
    c = pipe("a red circle", **FAST, seed=2).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3
    g = torch.Generator().manual_seed(1)
    np.testing.assert_array_equal(pipe("a red circle", **FAST, generator=g).frames, a)


def test_guidance_defaults_to_the_models_recommendation(pipe):
    nine = pipe("a red circle", **FAST, seed=0, guidance_scale=9.0).frames
    np.testing.assert_array_equal(pipe("a red circle", **FAST, seed=0).frames, nine)  # no recommendation: 9
    pipe.defaults = ModelDefaults(guidance_scale=2.0)
    two = pipe("a red circle", **FAST, seed=0, guidance_scale=2.0).frames
    np.testing.assert_array_equal(pipe("a red circle", **FAST, seed=0).frames, two)
    assert np.abs(two - nine).mean() > 1e-4


def test_guidance_changes_output(pipe):
    off = pipe("a red circle", **FAST, seed=0, guidance_scale=1.0).frames
    on = pipe("a red circle", **FAST, seed=0, guidance_scale=9.0).frames
    assert np.abs(off - on).mean() > 1e-4


def test_prompt_and_negative_prompt_reach_the_model(pipe):
    a = pipe("a red circle", **FAST, seed=0).frames
    b = pipe("a blue square", **FAST, seed=0).frames
    assert np.abs(a - b).mean() > 1e-5
    n = pipe("a red circle", negative_prompt="blurry", **FAST, seed=0).frames
    assert np.abs(a - n).mean() > 1e-5
    # without guidance the negative prompt is unused
    x = pipe("a red circle", negative_prompt="blurry", **FAST, seed=0, guidance_scale=1.0).frames
    y = pipe("a red circle", **FAST, seed=0, guidance_scale=1.0).frames
    np.testing.assert_array_equal(x, y)


def test_batch_of_prompts_matches_single_calls(pipe):
    lat = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    both = pipe(["a red circle", "a blue square"], **FAST, latents=lat).frames
    first = pipe("a red circle", **FAST, latents=lat[:1]).frames
    second = pipe("a blue square", **FAST, latents=lat[1:]).frames
    assert both.shape[0] == 2
    np.testing.assert_allclose(both[0], first[0], atol=1e-4)
    np.testing.assert_allclose(both[1], second[0], atol=1e-4)
    many = pipe(["a", "b"], negative_prompt=["c", "d"], num_videos_per_prompt=2, **FAST, seed=0).frames
    assert many.shape[0] == 4 and np.abs(many[0] - many[1]).mean() > 1e-4  # different noise per video


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_runs(pipe, name):
    pipe.set_scheduler(name)
    assert type(pipe.scheduler).__name__ == SCHEDULERS[name][0]
    out = pipe("a red circle", num_frames=2, num_inference_steps=3, seed=0).frames
    assert out.shape == (1, 2, 32, 32, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("name", ["euler-a", "ddpm"])
def test_stochastic_scheduler_takes_one_generator_per_video(pipe, name):
    # the scheduler steps on frames as images; each video's step noise comes from its own generator,
    # so a video is the same made alone or in a batch (it used to raise IndexError inside diffusers)
    pipe.set_scheduler(name)
    gens = lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    kw = {"num_frames": 3, "num_inference_steps": 3}
    both = pipe(["a red circle", "a blue square"], generator=gens(1, 2), **kw).frames
    first = pipe("a red circle", generator=gens(1), **kw).frames
    second = pipe("a blue square", generator=gens(2), **kw).frames
    np.testing.assert_allclose(both[0], first[0], atol=1e-4)
    np.testing.assert_allclose(both[1], second[0], atol=1e-4)
    other = pipe("a red circle", generator=gens(3), **kw).frames
    assert np.abs(other - first).mean() > 1e-4


def test_scheduler_swap_keeps_noise_schedule(pipe):
    ddim = pipe.scheduler
    dpm = make_scheduler("dpm++", ddim.config)
    assert dpm.config.beta_schedule == ddim.config.beta_schedule == "scaled_linear"
    assert dpm.config.algorithm_type == "dpmsolver++"
    with pytest.raises(ValueError, match="unknown scheduler 'nope'.*dpm\\+\\+.*ddim"):
        make_scheduler("nope", ddim.config)


def test_vae_slicing_tiling_attention_slicing_same_frames(pipe):
    ref = pipe("a red circle", num_frames=5, num_inference_steps=2, seed=0).frames
    pipe.enable_vae_slicing(2)
    sliced = pipe("a red circle", num_frames=5, num_inference_steps=2, seed=0).frames
    pipe.disable_vae_slicing()
    pipe.enable_attention_slicing(1)
    attn = pipe("a red circle", num_frames=5, num_inference_steps=2, seed=0).frames
    np.testing.assert_allclose(sliced, ref, atol=1e-5)
    np.testing.assert_allclose(attn, ref, atol=1e-5)


def test_vae_tiling_on_large_frames_close(pipe):
    pipe.vae.tile_sample_min_size = 32
    pipe.vae.tile_latent_min_size = 16
    ref = pipe("x", num_frames=2, num_inference_steps=1, height=64, width=64, seed=0).frames
    pipe.enable_vae_tiling()
    tiled = pipe("x", num_frames=2, num_inference_steps=1, height=64, width=64, seed=0).frames
    assert np.abs(tiled - ref).mean() < 0.05  # tiles are blended at the seams: close, not equal


def test_model_cpu_offload_same_frames(pipe):
    ref = pipe("a red circle", **FAST, seed=0).frames
    pipe.enable_model_cpu_offload(device="cpu")  # the hooks run; on a GPU machine the device is cuda
    off = pipe("a red circle", **FAST, seed=0).frames
    np.testing.assert_allclose(off, ref, atol=1e-5)


def test_callback_sees_every_step_and_can_stop(pipe):
    seen = []
    pipe(
        "x",
        num_frames=2,
        num_inference_steps=4,
        seed=0,
        callback_on_step_end=lambda p, i, t, kw: seen.append((i, p.num_timesteps, kw["latents"].shape)),
    )
    assert [s[0] for s in seen] == [0, 1, 2, 3] and seen[0][1] == 4 and seen[0][2] == (1, 4, 2, 16, 16)

    class Stop(Exception):
        pass

    def stop(p, i, t, kw):
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        pipe("x", num_frames=2, num_inference_steps=4, seed=0, callback_on_step_end=stop)


def test_progress_bar_can_be_turned_off(pipe, capsys):
    pipe.set_progress_bar_config(disable=False)
    pipe("x", **FAST, seed=0)
    assert "2/2" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe("x", **FAST, seed=0)
    assert capsys.readouterr().err == ""


def test_bert_encoder_with_attention_mask(bert_pipe):
    out = bert_pipe("a red circle moving right", **FAST, seed=0).frames
    assert out.shape == (1, 3, 32, 32, 3)
    # padding is masked: the embedding of the real tokens does not depend on the padded length
    emb, _ = bert_pipe.encode_prompt("a red circle", "cpu", do_classifier_free_guidance=False)
    bert_pipe.tokenizer.model_max_length = 24
    longer, _ = bert_pipe.encode_prompt("a red circle", "cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(emb[:, :5], longer[:, :5], atol=1e-5, rtol=1e-5)


BAD_INPUTS = [
    ({"prompt": ""}, "prompt must be a non-empty string"),
    ({"prompt": "   "}, "prompt must be a non-empty string"),
    ({"prompt": []}, "non-empty list"),
    ({"prompt": None}, "prompt is required"),
    ({"prompt": ["a", 3]}, "prompt must be a non-empty string, got 3"),
    ({"height": 31}, "height must be a positive multiple of 2.*got 31; nearest allowed"),
    ({"width": 33}, "width must be a positive multiple of 2.*got 33"),
    ({"height": 0}, "height must be a positive multiple"),
    ({"num_frames": 0}, f"num_frames must be an integer in \\[1, {MAX_FRAMES}\\], got 0"),
    ({"num_frames": MAX_FRAMES + 1}, f"num_frames must be an integer in \\[1, {MAX_FRAMES}\\]"),
    ({"num_inference_steps": 0}, "num_inference_steps must be an integer >= 1, got 0"),
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number, got nan"),
    ({"guidance_scale": float("inf")}, "guidance_scale must be a finite number"),
    ({"prompt": ["a", "b"], "negative_prompt": ["c"]}, "negative_prompt has 1 entries but prompt has 2"),
    ({"num_videos_per_prompt": 0}, "num_videos_per_prompt must be"),
    ({"output_type": "mp4"}, "output_type must be one of"),
    ({"latents": torch.zeros(1, 4, 3, 8, 8)}, "latents must have shape \\(1, 4, 3, 16, 16\\)"),
]


@pytest.mark.parametrize("kwargs,message", BAD_INPUTS)
def test_bad_inputs_raise_value_error(pipe, kwargs, message):
    args = {"prompt": "a red circle", "num_frames": 3, "num_inference_steps": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pipe(**args)


def test_save_and_load_give_identical_frames(pipe, tmp_path):
    from t2v.models.loading import save_model
    from t2v.pipelines.text_to_video import load_pipeline

    ref = pipe("a red circle", **FAST, seed=3).frames
    save_model(pipe, tmp_path / "m")
    loaded = load_pipeline(tmp_path / "m", device="cpu")
    assert isinstance(loaded, TextToVideoPipeline)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(loaded("a red circle", **FAST, seed=3).frames, ref)
    assert loaded.defaults == ModelDefaults()  # the fallbacks: nothing written
    pipe.defaults = ModelDefaults(guidance_scale=2.5, scene_motion="keyframes", transition_frames="auto")
    save_model(pipe, tmp_path / "d")
    assert load_pipeline(tmp_path / "d", device="cpu").defaults == pipe.defaults

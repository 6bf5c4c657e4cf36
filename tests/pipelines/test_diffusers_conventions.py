"""diffusers' conventions for TextToVideoSDPipeline hold for t2v's pipeline: the call's signature and
order, encode_prompt, callbacks, optional components, FreeU, fused QKV, dtype maps, errors, LoRA and
textual inversion. Frames are compared with diffusers' own pipeline on the same tiny components."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
from diffusers.callbacks import SDCFGCutoffCallback
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

from t2v import TextToVideoPipeline
from t2v.models.loading import ModelError, save_model
from t2v.models.temporal_position import add_frame_positions, frame_position_kind
from t2v.pipelines.long_video import LongVideoPipeline


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from diffusers import TextToVideoSDPipeline

FAST = {"num_frames": 2, "num_inference_steps": 2}


def run(p, prompt="a red circle", **kwargs):
    generator = torch.Generator("cpu").manual_seed(0)
    return p(prompt, generator=generator, output_type="np", **{**FAST, **kwargs}).frames


def diffusers_twin(pipe) -> TextToVideoSDPipeline:
    twin = TextToVideoSDPipeline(**pipe.components)
    twin.set_progress_bar_config(disable=True)
    return twin


def test_call_takes_diffusers_arguments_in_diffusers_order():
    ours = list(inspect.signature(TextToVideoPipeline.__call__).parameters.values())
    theirs = list(inspect.signature(TextToVideoSDPipeline.__call__).parameters.values())
    assert [p.name for p in ours[: len(theirs)]] == [p.name for p in theirs]
    model_defaults = {"num_inference_steps", "guidance_scale"}  # None: the model's (else diffusers' values)
    for a, b in zip(ours, theirs):
        assert a.default == b.default or (a.name in model_defaults and a.default is None), a.name
    extras = [p for p in ours[len(theirs) :] if p.kind is p.KEYWORD_ONLY]
    assert {p.name for p in extras} == {"num_videos_per_prompt", "seed", "regions"}
    long_params = list(inspect.signature(LongVideoPipeline.__call__).parameters)
    assert long_params[1:5] == ["prompt", "height", "width", "num_frames"]


def test_positional_call_and_fallback_steps(pipe):
    frames = pipe("a red circle", 32, 32, 2, 2, output_type="np").frames
    assert frames.shape == (1, 2, 32, 32, 3)
    seen = []
    pipe("x", num_frames=1, callback_on_step_end=lambda p, i, t, kw: seen.append(p.num_timesteps) or {})
    assert seen[0] == 50  # no t2v_model.json: diffusers' 50 steps


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"negative_prompt": "blue"},
        {"guidance_scale": 1.0},
        {"eta": 0.5},
    ],
)
def test_same_frames_as_diffusers(pipe, kwargs):
    np.testing.assert_allclose(run(pipe, **kwargs), run(diffusers_twin(pipe), **kwargs), atol=1e-5)


def test_prompt_embeds_without_negative_embeds_encode_the_negative_prompt(pipe):
    embeds, _ = pipe.encode_prompt("a red circle", "cpu", 1, False)
    for negative in (None, "blue"):
        ours = run(pipe, None, prompt_embeds=embeds, negative_prompt=negative)
        theirs = run(diffusers_twin(pipe), None, prompt_embeds=embeds, negative_prompt=negative)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
        np.testing.assert_allclose(ours, run(pipe, negative_prompt=negative), atol=1e-5)
    assert (
        np.abs(
            run(pipe, None, prompt_embeds=embeds) - run(pipe, None, prompt_embeds=embeds, negative_prompt="blue")
        ).max()
        > 1e-3
    )


@pytest.mark.parametrize("fixture", ["pipe", "bert_pipe"])
def test_clip_skip_takes_an_earlier_layer(fixture, request):
    p = request.getfixturevalue(fixture)
    tokens = p.tokenizer(
        ["a red circle"], padding="max_length", max_length=p.tokenizer.model_max_length, return_tensors="pt"
    )
    mask = tokens.attention_mask if getattr(p.text_encoder.config, "use_attention_mask", False) else None
    hidden = p.text_encoder(tokens.input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    expected = p.text_encoder.final_layer_norm(hidden) if fixture == "pipe" else hidden  # CLIP's norm; BERT has none
    embeds, _ = p.encode_prompt("a red circle", "cpu", 1, False, clip_skip=1)
    torch.testing.assert_close(embeds, expected)
    assert not torch.allclose(embeds, p.encode_prompt("a red circle", "cpu", 1, False)[0])


def test_encode_prompt_in_isolation(pipe):
    c = pipe.components
    text_only = TextToVideoPipeline(**{**c, "vae": None, "unet": None, "scheduler": None})
    embeds, negative = text_only.encode_prompt(
        ["a", "b"], "cpu", num_images_per_prompt=3, do_classifier_free_guidance=True, negative_prompt=["c", "d"]
    )
    assert embeds.shape[0] == negative.shape[0] == 6 and torch.equal(embeds[0], embeds[2])
    embeds, negative = text_only.encode_prompt("a red circle", "cpu", 1, True)
    no_text = TextToVideoPipeline(**{**c, "text_encoder": None, "tokenizer": None})
    got = run(no_text, None, prompt_embeds=embeds, negative_prompt_embeds=negative)
    np.testing.assert_allclose(got, run(pipe), atol=1e-6)
    with pytest.raises(ValueError, match="no text encoder"):
        run(no_text, "a red circle")


def test_legacy_callback_matches_diffusers(pipe):
    ours, theirs = [], []
    run(
        pipe, callback=lambda i, t, lat: ours.append((i, int(t), lat.clone())), callback_steps=2, num_inference_steps=4
    )
    run(
        diffusers_twin(pipe),
        callback=lambda i, t, lat: theirs.append((i, int(t), lat.clone())),
        callback_steps=2,
        num_inference_steps=4,
    )
    assert [o[:2] for o in ours] == [t[:2] for t in theirs] == [(0, 750), (2, 250)]
    torch.testing.assert_close(ours[-1][2], theirs[-1][2])
    with pytest.raises(ValueError, match="callback_steps"):
        run(pipe, callback_steps=0)


def test_callback_on_step_end_sees_and_replaces_tensors(pipe):
    seen = []

    def look(p, i, t, kw):
        seen.append((i, sorted(kw), kw["prompt_embeds"].shape[0]))
        return {"latents": torch.zeros_like(kw["latents"])} if i == 0 else {}

    inputs = ["latents", "prompt_embeds"]
    frames = run(pipe, callback_on_step_end=look, callback_on_step_end_tensor_inputs=inputs)
    assert seen == [(0, inputs, 2), (1, inputs, 2)]  # [negative; positive]
    assert np.abs(frames - run(pipe)).max() > 1e-3
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        run(pipe, callback_on_step_end=look, callback_on_step_end_tensor_inputs=["noise"])


def test_diffusers_pipeline_callbacks_work(pipe):
    cutoff = run(
        pipe,
        callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=None, cutoff_step_index=0),
        num_inference_steps=3,
    )
    assert pipe.guidance_scale == 0.0 and not pipe.do_classifier_free_guidance  # guidance off after step 0
    assert np.abs(cutoff - run(pipe, num_inference_steps=3)).max() > 1e-4


def test_interrupt_stops_the_loop(pipe):
    steps = []

    def stop(p, i, t, kw):
        steps.append(i)
        p._interrupt = True
        return {}

    run(pipe, callback_on_step_end=stop, num_inference_steps=4)
    assert steps == [0]


def test_freeu_changes_frames_and_turns_off(pipe):
    base = run(pipe)
    pipe.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    freeu = run(pipe)
    twin = run(diffusers_twin(pipe))
    pipe.disable_freeu()
    assert np.abs(freeu - base).max() > 1e-4
    np.testing.assert_allclose(freeu, twin, atol=1e-5)
    np.testing.assert_allclose(run(pipe), base, atol=1e-6)


def test_fused_qkv_keeps_frames_and_frame_positions(pipe):
    base = run(pipe)
    pipe.fuse_qkv_projections()
    np.testing.assert_allclose(run(pipe), base, atol=1e-4)
    pipe.unfuse_qkv_projections()
    add_frame_positions(pipe.unet, "sinusoidal+spatial")
    positioned = run(pipe)
    pipe.fuse_qkv_projections()
    assert frame_position_kind(pipe.unet) == "sinusoidal+spatial"
    np.testing.assert_allclose(run(pipe), positioned, atol=1e-4)


def test_save_load_round_trip_and_dtype_map(tmp_path, pipe):
    pipe.save_pretrained(tmp_path / "m", safe_serialization=True)
    loaded = TextToVideoPipeline.from_pretrained(tmp_path / "m")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(loaded), run(pipe), atol=1e-6)
    mixed = TextToVideoPipeline.from_pretrained(
        tmp_path / "m", torch_dtype={"unet": torch.bfloat16, "default": torch.float16}
    )
    assert mixed.unet.dtype == torch.bfloat16 and mixed.vae.dtype == mixed.text_encoder.dtype == torch.float16


def test_dtype_map_reaches_an_external_text_encoder(model_dir):
    loaded = TextToVideoPipeline.from_pretrained(model_dir, torch_dtype={"text_encoder": torch.bfloat16})
    assert loaded.text_encoder.dtype == torch.bfloat16 and loaded.unet.dtype == torch.float32


def test_missing_variant_says_so_as_diffusers_does(model_dir):
    with pytest.raises(ModelError, match=r"You are trying to load the model files of the `variant=fp16`"):
        TextToVideoPipeline.from_pretrained(model_dir, variant="fp16")


def tiny_lora(pipe, tmp_path, seed=0):
    """A random LoRA for pipe's UNet, saved with diffusers' LoRA writer."""
    torch.manual_seed(seed)
    unet = type(pipe.unet).from_config(pipe.unet.config)
    unet.load_state_dict(pipe.unet.state_dict())
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    inject_adapter_in_model(config, unet)
    TextToVideoPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(unet))
    return tmp_path


def test_lora_loads_scales_fuses_and_unloads(pipe, tmp_path):
    base = run(pipe)
    pipe.load_lora_weights(tiny_lora(pipe, tmp_path), adapter_name="style")
    with_lora = run(pipe)
    assert np.abs(with_lora - base).max() > 1e-3
    np.testing.assert_allclose(run(pipe, cross_attention_kwargs={"scale": 0.0}), base, atol=1e-5)
    np.testing.assert_allclose(run(pipe), with_lora, atol=1e-6)  # the scale was for one call only
    pipe.set_adapters(["style"], adapter_weights=[0.0])
    np.testing.assert_allclose(run(pipe), base, atol=1e-5)
    pipe.set_adapters(["style"], adapter_weights=[1.0])
    pipe.fuse_lora()
    np.testing.assert_allclose(run(pipe), with_lora, atol=1e-4)
    pipe.unfuse_lora()
    pipe.unload_lora_weights()
    np.testing.assert_allclose(run(pipe), base, atol=1e-5)
    assert type(pipe.unet).__name__ == "UNet3DConditionModel"
    pipe.save_pretrained(tmp_path / "saved")  # still diffusers' layout
    assert '"UNet3DConditionModel"' in (tmp_path / "saved" / "unet" / "config.json").read_text()


def test_lora_refuses_pickle(pipe, tmp_path):
    with pytest.raises(ValueError, match="safetensors"):
        pipe.load_lora_weights(tmp_path, weight_name="lora.bin")


def test_textual_inversion_adds_a_token(pipe):
    dim = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    torch.manual_seed(1)
    pipe.load_textual_inversion({"<shiny>": torch.randn(dim) * 3}, token="<shiny>")
    assert "<shiny>" in pipe.tokenizer.get_vocab()
    assert np.abs(run(pipe, "a <shiny> circle") - run(pipe, "a circle")).max() > 1e-4


def test_long_video_takes_a_prompt_dict_and_diffusers_callbacks(pipe):
    long = LongVideoPipeline(**pipe.components)
    long.set_progress_bar_config(disable=True)
    seen = []
    out = long(
        {0: "a red circle", 4: "a blue square"},
        num_frames=6,
        num_inference_steps=2,
        seed=0,
        window_size=4,
        output_type="latent",
        callback_on_step_end=lambda p, i, t, kw: seen.append(kw["latents"].shape[2]) or {},
    )
    assert out.frames.shape[2] == 6 and len(out.transition_frames) == 1 and len(seen) == 2
    with pytest.raises(ValueError, match="prompt dict"):
        long({2: "a red circle"}, num_frames=6)


def test_t2v_saves_for_diffusers(tmp_path, pipe):
    path = save_model(pipe, tmp_path / "m")
    assert '"TextToVideoSDPipeline"' in (path / "model_index.json").read_text()


def test_prompt_warning_from_the_model_planner(pipe):
    from t2v.models.defaults import ModelDefaults, PromptWarning

    pipe.defaults = ModelDefaults(regions="shapes")
    with pytest.warns(PromptWarning, match="names none of its shapes"):
        run(pipe, "a dog running", num_frames=1, num_inference_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptWarning)
        run(pipe, "a crimson orb sinking", num_frames=1, num_inference_steps=1)
    pipe.defaults = ModelDefaults()  # a model without a planner says nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptWarning)
        run(pipe, "a dog running", num_frames=1, num_inference_steps=1)


def test_the_blog_example_runs_unchanged(tmp_path, pipe):
    """diffusers' text-to-video blog code, with only the class name changed, gives diffusers' frames."""
    from diffusers import DPMSolverMultistepScheduler
    from diffusers.utils import export_to_video

    pipe.save_pretrained(tmp_path / "model")
    videos = []
    for cls in (TextToVideoPipeline, TextToVideoSDPipeline):
        p = cls.from_pretrained(tmp_path / "model", torch_dtype=torch.float32)
        p.scheduler = DPMSolverMultistepScheduler.from_config(p.scheduler.config)
        p.set_progress_bar_config(disable=True)
        torch.manual_seed(0)
        video_frames = p("Spiderman is surfing", num_inference_steps=3, num_frames=4).frames[0]
        assert export_to_video(video_frames, str(tmp_path / f"{cls.__name__}.mp4"))
        videos.append(video_frames)
    np.testing.assert_allclose(videos[0], videos[1], atol=1e-5)

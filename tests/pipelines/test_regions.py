"""Regional prompting (t2v.pipelines.regions) and the Shapes-world layout that feeds it."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from t2v.pipelines.regions import BLOCKED, Region, RegionalCrossAttnProcessor, band_masks, latent_masks, token_biases
from t2v.world.layout import object_phrases, shapes_regions


FAST = {"num_frames": 3, "num_inference_steps": 2}
PROMPT = "a red box and a blue ball"


def _halves(frames=3, size=32):
    return band_masks(2, "columns", frames, size, size)


def test_band_masks_tile_the_frame():
    for direction in ("columns", "rows"):
        masks = band_masks(3, direction, 2, 12, 18)
        assert all(m.shape == (2, 12, 18) for m in masks)
        assert torch.equal(sum(masks), torch.ones(2, 12, 18))  # every pixel in exactly one band
    left, right = band_masks(2, "columns", 1, 4, 4)
    assert left[0, :, :2].all() and not left[0, :, 2:].any() and right[0, :, 2:].all()
    top, bottom = band_masks(2, "rows", 1, 4, 4)
    assert top[0, :2].all() and not top[0, 2:].any()
    with pytest.raises(ValueError, match="direction"):
        band_masks(2, "diagonal", 1, 4, 4)


def test_token_biases_block_only_the_other_regions_words(bert_pipe):
    tok = bert_pipe.tokenizer
    regions = [Region("a red box", torch.ones(32, 32)), Region("a blue ball", torch.ones(32, 32))]
    bias = token_biases(tok, PROMPT, regions, tok.model_max_length)
    ids = tok(PROMPT, padding="max_length", max_length=tok.model_max_length).input_ids
    words = tok.convert_ids_to_tokens(ids)
    blocked = [[w for w, b in zip(words, row) if b == BLOCKED] for row in bias]
    assert blocked == [["a", "blue", "ball"], ["a", "red", "box"]]  # "and", [CLS], [SEP], padding stay audible


def test_latent_masks_pool_and_normalise_overlaps():
    left, right = _halves(frames=2, size=32)
    m = latent_masks([Region("x", left), Region("y", right)], 2, (4, 4))
    assert m.shape == (2, 2, 4, 4) and torch.equal(m.sum(0), torch.ones(2, 4, 4))
    whole = torch.ones(32, 32)  # [H, W] applies to every frame; two full masks share each pixel
    m = latent_masks([Region("x", whole), Region("y", whole)], 2, (4, 4))
    assert torch.allclose(m, torch.full_like(m, 0.5))


def test_processor_hides_the_other_regions_words_from_each_region():
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    frames, h, w, tokens = 2, 4, 4, 5
    bias = torch.zeros(2, tokens)
    bias[0, 3:] = BLOCKED  # region 0 (left) must not hear tokens 3-4; region 1 (right) tokens 1-2
    bias[1, 1:3] = BLOCKED
    left, right = band_masks(2, "columns", frames, h, w)
    state = {"bias": bias, "masks": torch.stack([left, right]), "cfg": True}
    proc = RegionalCrossAttnProcessor(AttnProcessor2_0(), state)
    x = torch.randn(2 * frames, h * w, 8)  # [uncond frames, cond frames]
    ctx = torch.randn(2 * frames, tokens, 6)
    out = proc(attn, x, ctx)
    changed = ctx.clone()
    changed[frames:, 3:] += 5  # the prompt's right-region words change
    out2 = proc(attn, x, changed)
    is_left = left[0].flatten().bool()
    assert torch.allclose(out[frames:, is_left], out2[frames:, is_left], atol=1e-6)  # left cannot hear them
    assert (out[frames:, ~is_left] - out2[frames:, ~is_left]).abs().max() > 1e-3  # right does
    plain = AttnProcessor2_0()(attn, x, ctx)
    assert torch.allclose(out[:frames], plain[:frames], atol=1e-6)  # the negative prompt is untouched
    assert not torch.allclose(out[frames:], plain[frames:], atol=1e-4)


def test_pipeline_regions(bert_pipe):
    left, right = _halves()
    plain = bert_pipe(PROMPT, **FAST, seed=0).frames
    regions = [Region("a red box", left), Region("a blue ball", right)]
    regional = bert_pipe(PROMPT, **FAST, seed=0, regions=regions).frames
    assert np.abs(regional - plain).max() > 1e-4
    np.testing.assert_array_equal(bert_pipe(PROMPT, **FAST, seed=0, regions=regions).frames, regional)
    # nothing is blocked when a region's text is the whole prompt, or when no pixel lies in a region
    np.testing.assert_allclose(
        bert_pipe(PROMPT, **FAST, seed=0, regions=[Region(PROMPT, left + right)]).frames, plain, atol=1e-5
    )
    empty = torch.zeros(3, 32, 32)
    np.testing.assert_allclose(
        bert_pipe(PROMPT, **FAST, seed=0, regions=[Region("a red box", empty), Region("a blue ball", empty)]).frames,
        plain,
        atol=1e-5,
    )
    np.testing.assert_array_equal(
        bert_pipe(PROMPT, **FAST, seed=0).frames, plain
    )  # processors restored after the call
    assert bert_pipe(PROMPT, **FAST, seed=0, guidance_scale=1.0, regions=regions).frames.shape == plain.shape  # no CFG


def test_long_video_regions_in_one_keyframe_pass(bert_pipe):
    """A long one-prompt video with keyframes is one pass, so regions apply: exactly the plain
    pipeline's regional clip of keyframes (masks taken at the keyframes' frames), interpolated.
    Windows past the native length, or a storyboard, are several passes: a clear error."""
    from t2v.pipelines.long_video.blend import interpolate_frames
    from t2v.pipelines.long_video.pipeline import LongVideoPipeline
    from t2v.pipelines.long_video.storyboard import Scene

    long = LongVideoPipeline(**bert_pipe.components)
    long.set_progress_bar_config(disable=True)
    left, right = _halves()
    moving = torch.zeros(10, 32, 32)  # a mask that moves: frame f covers columns [3f, 3f + 4)
    for f in range(10):
        moving[f, :, 3 * f : 3 * f + 4] = 1
    regions = [Region("a red box", moving), Region("a blue ball", 1 - moving)]
    kw = {"num_inference_steps": 2, "seed": 0, "window_size": 4, "output_type": "latent"}
    got = long(PROMPT, num_frames=10, scene_motion="keyframes", regions=regions, **kw).frames
    at = [0, 3, 6, 9]  # the keyframes' frames
    ref = bert_pipe(
        PROMPT,
        num_frames=4,
        num_inference_steps=2,
        seed=0,
        output_type="latent",
        regions=[Region(r.text, r.mask[at]) for r in regions],
    ).frames
    torch.testing.assert_close(
        got, interpolate_frames(ref, np.array(at, np.float32), np.arange(10)), atol=1e-5, rtol=1e-5
    )
    plain = long(PROMPT, num_frames=10, scene_motion="keyframes", **kw).frames
    assert (got - plain).abs().max() > 1e-4
    with pytest.raises(ValueError, match="regions work in one pass"):
        long(PROMPT, num_frames=10, scene_motion="windows", regions=regions, **kw)
    with pytest.raises(ValueError, match="regions work in one pass.*storyboard"):
        long(scenes=[Scene(PROMPT, 5), Scene(PROMPT, 5)], scene_motion="keyframes", regions=regions, **kw)
    with pytest.raises(ValueError, match=r"regions\[0\].mask has shape \(4, 32, 32\)"):
        long(PROMPT, num_frames=10, scene_motion="keyframes", regions=[Region("a red box", moving[:4])], **kw)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"regions": []}, "non-empty list"),
        ({"regions": [("a red box", torch.ones(32, 32))]}, r"regions\[0\] must be a t2v.pipelines.regions.Region"),
        (
            {"regions": [Region("a green cube", torch.ones(32, 32))]},
            r"regions\[0\].text must be a non-empty part of the prompt",
        ),
        ({"regions": [Region("a red box", torch.ones(16, 32))]}, r"regions\[0\].mask has shape \(16, 32\)"),
        ({"regions": [Region("a red box", torch.ones(5, 32, 32))]}, r"\(3, 32, 32\)"),
        ({"regions": [Region("a red box", torch.full((32, 32), 2.0))]}, r"values must lie in \[0, 1\]"),
        ({"prompt": [PROMPT, PROMPT], "regions": [Region("a red box", torch.ones(32, 32))]}, "single prompt"),
    ],
)
def test_bad_regions_are_clear_errors(bert_pipe, kwargs, match):
    kwargs = {"prompt": PROMPT, **kwargs}
    with pytest.raises(ValueError, match=match):
        bert_pipe(**kwargs, **FAST, seed=0)


def test_clip_tokenizer_works_and_a_slow_tokenizer_is_a_clear_error(pipe, monkeypatch):
    left, right = _halves()
    regions = [Region("a red box", left), Region("a blue ball", right)]
    assert (
        np.abs(pipe(PROMPT, **FAST, seed=0, regions=regions).frames - pipe(PROMPT, **FAST, seed=0).frames).max() > 1e-4
    )
    monkeypatch.setattr(type(pipe.tokenizer), "is_fast", property(lambda self: False))
    with pytest.raises(ValueError, match="fast tokenizer"):
        pipe(PROMPT, **FAST, seed=0, regions=regions)


def test_shapes_layout_reads_objects_and_motion_axis():
    r = shapes_regions(
        "a small red square moving right and a purple circle standing still on a black background", 4, 64, 64
    )
    assert [x.text for x in r] == ["a small red square moving right", "a purple circle standing still"]
    assert r[0].mask[0, :32].all() and not r[0].mask[0, 32:].any()  # horizontal mover: top / bottom bands
    r = shapes_regions(
        "there is a tiny red square and it falls, and a tiny purple block and it stays put, gray background", 4, 64, 64
    )
    assert [x.text for x in r] == ["a tiny red square and it falls", "a tiny purple block and it stays put"]
    assert r[0].mask[0, :, :32].all() and not r[0].mask[0, :, 32:].any()  # vertical mover: left / right bands
    assert shapes_regions("A Red Box growing and a blue ball shrinking", 4, 64, 64)[0].text == "A Red Box growing"
    assert shapes_regions("a red circle moving right on a black background", 4, 64, 64) is None  # one object
    assert shapes_regions("a cat and a dog", 4, 64, 64) is None  # no colours: not a Shapes prompt
    assert object_phrases("a clip of a red tile climbing and a purple square expanding over a black backdrop") == [
        "a red tile climbing",
        "a purple square expanding",
    ]


def test_shapes_layout_on_every_eval_prompt():
    from t2v.eval.run import eval_prompts

    for p in eval_prompts(48):
        regions = shapes_regions(p.prompt, 16, 64, 64)
        assert (regions is not None) == (len(p.scene.objects) == 2), p.prompt
        if regions:
            assert all(r.text in p.prompt for r in regions)


def test_evaluate_with_regions(bert_pipe):
    from t2v.eval.run import eval_prompts, evaluate

    prompts = [p for p in eval_prompts(12) if p.split == "seen"][:6]
    assert {len(p.scene.objects) for p in prompts} == {1, 2}
    bert_pipe.tokenizer.model_max_length = 32
    report = evaluate(bert_pipe, prompts, seeds=(0, 1), progress=False, regions=True, **FAST)
    assert [(r["prompt"], r["seed"]) for r in report["results"]] == [(p.prompt, s) for p in prompts for s in (0, 1)]
    assert all(r["regions"] == (len(r["scene"]["objects"]) == 2) for r in report["results"])
    two = report["summary"]["seen"]["two_objects"]
    assert two["videos"] == 2 * sum(len(p.scene.objects) == 2 for p in prompts)


def test_cli_generate_with_regions(model_dir, tmp_path):
    """--regions / --no-regions, and the model's default (t2v_model.json "defaults": {"regions": "shapes"})."""
    import json

    from typer.testing import CliRunner

    from t2v.cli import app
    from t2v.generate import _cache
    from t2v.video_io import read_video

    base = [
        "generate",
        "a red box and a blue ball",
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--steps",
        "2",
        "--height",
        "32",
        "--width",
        "32",
        "--seed",
        "0",
        "-q",
    ]
    runner = CliRunner()

    def make(name, *extra, frames="3"):
        r = runner.invoke(app, [*base, "--frames", frames, "-o", str(tmp_path / name), *extra])
        return r, (read_video(tmp_path / name)[0] if r.exit_code == 0 else None)

    r, _ = make("refused.npy", "--regions")  # this model names no region planner
    assert r.exit_code == 2 and "no region planner" in r.output and not (tmp_path / "refused.npy").exists()
    _, plain = make("plain.npy")

    meta_path = model_dir / "t2v_model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta_path.write_text(json.dumps({**meta, "defaults": {**meta.get("defaults", {}), "regions": "shapes"}}))
    _cache.clear()
    _, regional = make("default.npy")  # the model's default: regions
    assert plain.shape == regional.shape == (3, 32, 32, 3) and not np.array_equal(plain, regional)
    np.testing.assert_array_equal(make("on.npy", "--regions")[1], regional)
    np.testing.assert_array_equal(make("off.npy", "--no-regions")[1], plain)
    r, _ = make("long.npy", "--regions", frames="40")
    assert r.exit_code == 2 and "regions work in one pass" in r.output and not (tmp_path / "long.npy").exists()
    r, long = make("long_default.npy", frames="20")  # past the native length: windows, no regions, no error
    assert r.exit_code == 0 and long.shape[0] == 20
    # a model whose long videos are one pass of keyframes: regions there too, by default and when asked
    meta_path.write_text(
        json.dumps(
            {**meta, "defaults": {**meta.get("defaults", {}), "regions": "shapes", "scene_motion": "keyframes"}}
        )
    )
    _cache.clear()
    (r1, kf_default), (r2, kf_plain) = make("kf.npy", frames="20"), make("kf_off.npy", "--no-regions", frames="20")
    assert (
        r1.exit_code == 0
        and r2.exit_code == 0
        and kf_default.shape[0] == 20
        and not np.array_equal(kf_default, kf_plain)
    )
    np.testing.assert_array_equal(make("kf_on.npy", "--regions", frames="20")[1], kf_default)
    r, _ = make("kf_windows.npy", "--regions", "--scene-motion", "windows", frames="20")
    assert r.exit_code == 2 and "regions work in one pass" in r.output
    _cache.clear()


def test_clip_regions_give_each_phrase_the_band_of_its_object():
    import json

    from t2v.world import COLORS, ShapesWorldDataset
    from t2v.world.captions import mentions
    from t2v.world.layout import clip_regions

    ds = ShapesWorldDataset(40, seed=3, num_frames=6, height=32, width=32, p_two_objects=0.7)
    seen_directions = set()
    for i in range(len(ds)):
        item = ds[i]
        scene = json.loads(item["scene"])
        regions = clip_regions(item["caption"], scene, item["video"])
        if len(scene["objects"]) == 1:
            assert regions is None
            continue
        assert regions is not None and [r.text in item["caption"] for r in regions] == [True, True]
        for r in regions:
            (color,) = set(mentions(r.text, "color"))  # colour words of any caption set ("scarlet")
            rgb = torch.tensor(COLORS[color]) / 127.5 - 1
            pixels = (item["video"] - rgb[:, None, None]).abs().amax(1) < 0.02  # [F, H, W]
            assert pixels.any() and r.mask.bool()[pixels].all(), (
                item["caption"],
                r.text,
            )  # the whole object, every frame
        seen_directions.add("columns" if regions[0].mask[0, 0, 0] != regions[0].mask[0, 0, -1] else "rows")
    assert seen_directions == {"columns", "rows"}

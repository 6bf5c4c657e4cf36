"""Tests of the Shapes world: specs, sampling, rendering, captions, dataset, sample writer."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from t2v.world import (
    BACKGROUNDS,
    COLORS,
    GRAMMAR_WORDS,
    MOTIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    SceneSpec,
    ShapesWorldDataset,
    canonical_caption,
    caption,
    is_held_out,
    novel_caption,
    render,
    sample_scene,
    scene_from_dict,
    scene_is_held_out,
    scene_to_dict,
    trajectories,
    validation_caption,
    write_samples,
)
from t2v.world import captions as cap
from t2v.world.shapes import shape_mask


def rng(*seed):
    return np.random.default_rng(list(seed) or 0)


def colour_mask(frames, color):
    return np.all(frames == np.array(COLORS[color], np.uint8), axis=-1)


def centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_constants():
    assert BACKGROUNDS == {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
    assert COLORS["red"] == (230, 40, 40) and COLORS["white"] == (250, 250, 250) and len(COLORS) == 8
    assert SHAPES == ("circle", "square", "triangle") and SIZES == ("small", "large")
    assert MOTIONS == ("left", "right", "up", "down", "still", "growing", "shrinking")


@pytest.mark.parametrize(
    "args, word",
    [
        (("hexagon", "red", "small", "left"), "shape"),
        (("circle", "pink", "small", "left"), "color"),
        (("circle", "red", "medium", "left"), "size"),
        (("circle", "red", None, "left"), "size"),
        (("circle", "red", "small", "growing"), "size"),
        (("circle", "red", "small", "spinning"), "motion"),
    ],
)
def test_object_spec_validation(args, word):
    with pytest.raises(ValueError, match=word):
        ObjectSpec(*args)


def test_scene_spec_validation():
    red = ObjectSpec("circle", "red", "small", "left")
    with pytest.raises(ValueError, match="background"):
        SceneSpec("pink", (red,))
    with pytest.raises(ValueError, match="similar"):
        SceneSpec("white", (ObjectSpec("square", "white", "large", "still"),))
    with pytest.raises(ValueError, match="distinct"):
        SceneSpec("black", (red, ObjectSpec("square", "red", "large", "still")))
    with pytest.raises(ValueError, match="1 or 2"):
        SceneSpec("black", ())
    with pytest.raises(ValueError, match="overlap"):
        SceneSpec("black", (red, ObjectSpec("square", "blue", "large", "up")))
    SceneSpec("black", (ObjectSpec("square", "white", "large", "still"),))  # white on black is fine


def test_scene_dict_roundtrip():
    for i in range(50):
        scene = sample_scene(rng(i), p_two_objects=0.5)
        d = json.loads(json.dumps(scene_to_dict(scene)))
        assert scene_from_dict(d) == scene


def test_held_out_rules():
    assert is_held_out(ObjectSpec("triangle", "purple", "large", "left"))
    assert is_held_out(ObjectSpec("square", "orange", "small", "up"))
    assert is_held_out(ObjectSpec("circle", "green", None, "shrinking"))
    assert not is_held_out(ObjectSpec("circle", "purple", None, "growing"))
    assert not is_held_out(ObjectSpec("triangle", "orange", "small", "down"))
    assert not is_held_out(ObjectSpec("square", "green", None, "shrinking"))


def test_train_split_never_held_out_and_covers_attributes():
    r = rng(0)
    scenes = [sample_scene(r) for _ in range(5000)]
    assert not any(scene_is_held_out(s) for s in scenes)
    objs = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objs} == set(SHAPES)
    assert {o.color for o in objs} == set(COLORS)
    assert {o.motion for o in objs} == set(MOTIONS)
    assert {o.size for o in objs} == {*SIZES, None}
    assert {s.background for s in scenes} == set(BACKGROUNDS)
    assert not any(o.color == "white" and s.background == "white" for s in scenes for o in s.objects)
    assert all(len({o.color for o in s.objects}) == len(s.objects) for s in scenes)
    two = np.mean([len(s.objects) == 2 for s in scenes])
    assert 0.2 < two < 0.3
    # non-held-out parts of the held-out attributes still occur
    assert any(o.color == "purple" and o.shape != "triangle" for o in objs)
    assert any(o.shape == "circle" and o.motion == "growing" for o in objs)


def test_held_out_split():
    r = rng(1)
    scenes = [sample_scene(r, split="held_out", p_two_objects=0.9) for _ in range(600)]
    assert all(len(s.objects) == 1 and is_held_out(s.objects[0]) for s in scenes)
    objs = [s.objects[0] for s in scenes]
    assert any(o.color == "purple" and o.shape == "triangle" for o in objs)
    assert any(o.color == "orange" and o.motion == "up" for o in objs)
    assert any(o.shape == "circle" and o.motion == "shrinking" for o in objs)


def test_sample_scene_bad_args():
    with pytest.raises(ValueError, match="split"):
        sample_scene(rng(0), split="test")
    with pytest.raises(ValueError, match="p_two_objects"):
        sample_scene(rng(0), p_two_objects=1.5)


def test_render_deterministic_and_exact_palette():
    scene = SceneSpec(
        "gray", (ObjectSpec("circle", "red", "large", "right"), ObjectSpec("triangle", "cyan", "small", "still"))
    )
    a, b, c = render(scene, rng=rng(5)), render(scene, rng=rng(5)), render(scene, rng=rng(6))
    assert a.dtype == np.uint8 and a.shape == (16, 64, 64, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(render(scene), render(scene))  # rng=None is deterministic too
    colours = {tuple(p) for p in a.reshape(-1, 3)}
    assert colours == {BACKGROUNDS["gray"], COLORS["red"], COLORS["cyan"]}  # exact colours, no anti-aliasing


@pytest.mark.parametrize("h, w", [(64, 64), (32, 32), (40, 96), (80, 36)])
@pytest.mark.parametrize("motion", ["left", "right", "up", "down"])
def test_moving_objects_travel(h, w, motion):
    for i in range(6):
        size, shape = SIZES[i % 2], SHAPES[i % 3]
        objs = (ObjectSpec(shape, "yellow", size, motion),)
        if i >= 3:  # with a second object in the other band
            objs += (ObjectSpec(SHAPES[(i + 1) % 3], "blue", "large", "still" if i == 3 else motion),)
        frames = render(SceneSpec("black", objs), 16, h, w, rng(i))
        d = centroid(colour_mask(frames[-1], "yellow")) - centroid(colour_mask(frames[0], "yellow"))
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[motion]
        assert sign * d[axis] / (w, h)[axis] >= 0.4
        assert abs(d[1 - axis]) < 1.0
        areas = colour_mask(frames, "yellow").sum((1, 2))
        assert np.all(areas == areas[0])  # snapped to the pixel grid: no shimmer


@pytest.mark.parametrize("h, w", [(64, 64), (32, 32), (48, 100)])
def test_growing_shrinking_and_still(h, w):
    for i, shape in enumerate(SHAPES):
        scene = SceneSpec(
            "white", (ObjectSpec(shape, "green", None, "growing"), ObjectSpec(shape, "red", None, "shrinking"))
        )
        frames = render(scene, 12, h, w, rng(i))
        g, s = colour_mask(frames, "green").sum((1, 2)), colour_mask(frames, "red").sum((1, 2))
        assert g[-1] / g[0] >= 2 and s[0] / s[-1] >= 2
        assert np.all(np.diff(g) >= 0) and np.all(np.diff(s) <= 0)
        for color in ("green", "red"):  # centre fixed (the triangle's centroid moves a little)
            drift = centroid(colour_mask(frames[-1], color)) - centroid(colour_mask(frames[0], color))
            assert np.abs(drift).max() < 0.06 * min(h, w)
        still = render(SceneSpec("black", (ObjectSpec(shape, "blue", "small", "still"),)), 8, h, w, rng(i))
        assert all(np.array_equal(f, still[0]) for f in still)


def test_sizes_scale_with_canvas():
    for h, w, small, large in [(64, 64, 12, 22), (32, 32, 6, 11), (128, 96, 18, 33)]:
        for size, d in (("small", small), ("large", large)):
            f = render(SceneSpec("black", (ObjectSpec("square", "red", size, "still"),)), 1, h, w, rng(0))[0]
            ys, xs = np.nonzero(colour_mask(f, "red"))
            assert xs.max() - xs.min() + 1 == d and ys.max() - ys.min() + 1 == d


def test_triangle_is_upright():
    f = render(SceneSpec("black", (ObjectSpec("triangle", "red", "large", "still"),)), 1, rng=rng(0))[0]
    rows = colour_mask(f, "red").sum(1)
    rows = rows[rows > 0]
    assert rows[0] <= 2 and rows[-1] >= 20 and np.all(np.diff(rows) >= 0)


def test_num_frames_one_is_first_frame():
    scene = SceneSpec(
        "black", (ObjectSpec("circle", "red", None, "growing"), ObjectSpec("square", "blue", "small", "right"))
    )
    one = render(scene, 1, rng=rng(3))
    assert one.shape == (1, 64, 64, 3)
    assert np.array_equal(one[0], render(scene, 16, rng=rng(3))[0])


def test_render_bad_args():
    scene = sample_scene(rng(0))
    for kwargs, word in [({"num_frames": 0}, "num_frames"), ({"height": 31}, "height"), ({"width": 16}, "width")]:
        with pytest.raises(ValueError, match=word):
            render(scene, **kwargs)
    with pytest.raises(ValueError, match="scene"):
        render("a red ball")


def test_two_objects_never_overlap_and_stay_inside():
    scenes = []
    for i in range(400):
        h, w = [(64, 64), (32, 32), (40, 96), (96, 40)][i % 4]
        scene = sample_scene(rng(7, i), p_two_objects=1.0)
        assert len(scene.objects) == 2
        tracks = trajectories(scene, 9, h, w, rng(8, i))
        frames = render(scene, 9, h, w, rng(8, i))
        for f in range(9):
            masks = [shape_mask(o.shape, *t[f], h, w) for o, t in zip(scene.objects, tracks)]
            assert not np.any(masks[0] & masks[1]), (i, scene)
            for o, m in zip(scene.objects, masks):
                assert np.array_equal(colour_mask(frames[f], o.color), m)  # measured: not occluded
                assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())  # not clipped
        scenes.append(scene)
    motions = {frozenset(o.motion for o in s.objects) for s in scenes}
    assert len(motions) > 15


# --- captions ---

CAPTIONS = {"train": caption, "validation": validation_caption, "novel": novel_caption}
HELD = {"validation": cap.VALIDATION_WORDS, "novel": cap.NOVEL_WORDS}


def captions_of(name, seed, n=3000):
    r = rng(seed)
    scenes = [sample_scene(r, p_two_objects=0.5) for _ in range(n)]
    return [(s, CAPTIONS[name](s, r)) for s in scenes]


def test_vocabularies_are_disjoint_and_named():
    sets = (cap.TRAIN_WORDS, cap.VALIDATION_WORDS, cap.NOVEL_WORDS)
    assert all(not a & b for i, a in enumerate(sets) for b in sets[i + 1 :])
    assert cap.TRAIN_WORDS <= GRAMMAR_WORDS and not (cap.VALIDATION_WORDS | cap.NOVEL_WORDS) & GRAMMAR_WORDS
    assert {"crimson", "teal", "sinking", "travelling", "orb", "dot", "tile", "wedge", "motionless"} <= cap.NOVEL_WORDS
    assert {"big", "tiny", "huge", "rising", "falling", "heading", "expanding", "there"} <= cap.TRAIN_WORDS
    for split, held in ((cap.VALIDATION, cap.VALIDATION_WORDS), (cap.NOVEL, cap.NOVEL_WORDS)):
        for phrase in cap.split_phrases(split):  # every held-out phrase has a word of its own set
            assert cap.words(phrase) & held, phrase
    for kind, table in cap.VOCABULARY.items():
        assert set(table) == set(
            {"color": COLORS, "background": BACKGROUNDS, "shape": SHAPES, "size": SIZES}.get(kind, MOTIONS)
        )
        for concept, sets_ in table.items():
            assert all(sets_), (kind, concept)  # words in each of the three sets
            for p in (x for s in sets_ for pair in s for x in ((pair,) if isinstance(pair, str) else pair)):
                assert cap.mentions(p, kind) == [concept], p  # each phrase names its concept, and only it
                others = {"background"} if kind == "color" else {"color"} if kind == "background" else set()
                for other in set(cap.VOCABULARY) - {kind} - others:
                    assert not cap.mentions(p, other), (p, other)


def test_caption_keeps_to_the_training_words():
    texts = captions_of("train", 9, 6000)
    held = cap.VALIDATION_WORDS | cap.NOVEL_WORDS
    for _, text in texts:
        assert cap.words(text) <= GRAMMAR_WORDS and not cap.words(text) & held, text
    synonyms = {w for sets in cap.COLOR_WORDS.values() for p in sets[cap.TRAIN] for w in cap.words(p)} - set(COLORS)
    plain_colours = np.mean([not cap.words(text) & synonyms for _, text in texts])
    assert 0.35 < plain_colours < 0.7, plain_colours  # the canonical colour words stay frequent, synonyms too
    assert 0.3 < np.mean([text.startswith("a ") and " that " not in text for _, text in texts]) < 0.8


@pytest.mark.parametrize("name", ["validation", "novel"])
def test_held_out_captions_have_their_own_words(name):
    other = HELD["novel" if name == "validation" else "validation"]
    for _, text in captions_of(name, 10):
        assert cap.words(text) & HELD[name] and not cap.words(text) & other, text
        assert cap.words(text) - GRAMMAR_WORDS, text


@pytest.mark.parametrize("name", list(CAPTIONS))
def test_captions_describe_their_scene(name):
    for scene, text in captions_of(name, 11):
        objs = scene.objects
        assert text == text.lower() and "  " not in text and not text.endswith((",", " "))
        assert sorted(cap.mentions(text, "shape")) == sorted(o.shape for o in objs), text
        assert sorted(cap.mentions(text, "motion")) == sorted(o.motion for o in objs), text
        colors = set(cap.mentions(text, "color"))
        assert {o.color for o in objs} <= colors <= {o.color for o in objs} | {scene.background}, text
        assert set(cap.mentions(text, "size")) <= {o.size for o in objs}, text
        assert set(cap.mentions(text, "background")) <= {scene.background} | {o.color for o in objs}, text


def test_captions_fit_the_text_encoder():
    """The embedded model's tokenizer keeps MINILM_MAX_TOKENS tokens: no caption is cut."""
    from pathlib import Path

    from transformers import BertTokenizerFast

    import t2v
    from t2v.models.text_encoders import MINILM_MAX_TOKENS

    tokenizer = BertTokenizerFast.from_pretrained(Path(t2v.__file__).parent / "models" / "default" / "tokenizer")
    for name in CAPTIONS:
        texts = [text for _, text in captions_of(name, 12, 2000)]
        assert max(len(ids) for ids in tokenizer(texts)["input_ids"]) <= MINILM_MAX_TOKENS


def test_caption_varies_and_is_deterministic():
    scene = SceneSpec("black", (ObjectSpec("circle", "red", "small", "right"),))
    texts = {caption(scene, rng(i)) for i in range(400)}
    assert "a small red ball sliding to the right on a black background" in texts  # the plain grammar
    assert len(texts) > 200
    assert any("scarlet" in t for t in texts) and any(t.startswith("there is") for t in texts)
    assert any("small" not in t for t in texts) and any("background" not in t for t in texts)
    for f in CAPTIONS.values():
        assert f(scene, rng(3)) == f(scene, rng(3))


def test_vocabulary_summary():
    summary = cap.vocabulary_summary()
    assert {"color", "background", "shape", "size", "motion", "verb", "direction", "lead"} <= set(summary)
    assert set(summary["color"]) == set(COLORS) and set(summary["motion"]) == set(MOTIONS)
    assert summary["color"]["red"]["novel"] == ["crimson", "blood red"]
    assert (
        "sinking" in summary["motion"]["down"]["novel"]
        and "travelling" in summary["verb"]["left, right, up, down"]["novel"]
    )
    for kind in ("color", "background", "shape", "size", "motion"):
        for entry in summary[kind].values():
            for split, held in HELD.items():
                assert all(cap.words(p) & held for p in entry[split])


def test_canonical_caption():
    red = ObjectSpec("circle", "red", "small", "right")
    assert canonical_caption(SceneSpec("black", (red,))) == "a small red circle moving right on a black background"
    two = SceneSpec(
        "white", (ObjectSpec("square", "blue", None, "growing"), ObjectSpec("triangle", "orange", "large", "still"))
    )
    assert (
        canonical_caption(two)
        == "a blue square growing and a large orange triangle standing still on a white background"
    )
    r = rng(4)
    for _ in range(200):  # canonical phrasings belong to the training vocabulary
        assert cap.words(canonical_caption(sample_scene(r, p_two_objects=0.5))) <= GRAMMAR_WORDS


# --- dataset and sample writer ---


def test_dataset_items():
    ds = ShapesWorldDataset(20, seed=3, num_frames=8, height=32, width=48)
    assert len(ds) == 20
    item = ds[5]
    v = item["video"]
    assert v.dtype == torch.float32 and v.shape == (8, 3, 32, 48)
    assert v.min() >= -1 and v.max() <= 1 and v.min() < 0 < v.max()
    scene = scene_from_dict(json.loads(item["scene"]))
    assert {o.color for o in scene.objects} <= set(cap.mentions(item["caption"], "color"))
    bg = torch.tensor(BACKGROUNDS[scene.background], dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(v[0, :, 0, 0], bg)
    again = ShapesWorldDataset(20, seed=3, num_frames=8, height=32, width=48)[5]
    assert torch.equal(again["video"], v) and again["caption"] == item["caption"] and again["scene"] == item["scene"]
    other = ShapesWorldDataset(20, seed=4, num_frames=8, height=32, width=48)[5]
    assert not torch.equal(other["video"], v)
    assert ds[-1]["scene"] == ds[19]["scene"]
    with pytest.raises(IndexError):
        ds[20]
    held = ShapesWorldDataset(10, split="held_out", num_frames=2)
    assert all(scene_is_held_out(scene_from_dict(json.loads(held[i]["scene"]))) for i in range(10))
    with pytest.raises(ValueError, match="split"):
        ShapesWorldDataset(10, split="val")


def test_write_samples(tmp_path):
    paths = write_samples(3, tmp_path / "out", seed=1, num_frames=4, height=32, width=32)
    assert [p.name for p in paths] == ["clip_000.gif", "clip_001.gif", "clip_002.gif"]
    lines = [json.loads(line) for line in (tmp_path / "out" / "captions.jsonl").read_text().splitlines()]
    assert [line["file"] for line in lines] == [p.name for p in paths]
    for p, line in zip(paths, lines):
        frames = iio.imread(p)
        assert frames.shape[:3] == (4, 32, 32)
        scene = scene_from_dict(line["scene"])
        assert {o.color for o in scene.objects} <= set(cap.mentions(line["caption"], "color"))

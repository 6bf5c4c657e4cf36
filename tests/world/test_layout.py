"""The region layout planner (t2v.world.layout) reads prompts in the words of all three caption sets."""

import json

import numpy as np
import pytest
import torch

from t2v.world import COLORS, ShapesWorldDataset, caption, novel_caption, sample_scene, validation_caption
from t2v.world import captions as cap
from t2v.world.layout import clip_regions, has_layout, object_phrases, prompt_warning, shapes_regions


CAPTIONS = {"train": caption, "validation": validation_caption, "novel": novel_caption}


def concepts(phrase):
    return tuple(tuple(sorted(set(cap.mentions(phrase, k)))) for k in ("color", "shape", "motion"))


@pytest.mark.parametrize("name", list(CAPTIONS))
def test_layout_reads_every_caption_set(name):
    r = np.random.default_rng([5, len(name)])
    for _ in range(1500):
        scene = sample_scene(r, p_two_objects=0.6)
        text = CAPTIONS[name](scene, r)
        phrases = object_phrases(text)
        objs = {((o.color,), (o.shape,), (o.motion,)) for o in scene.objects}
        assert len(phrases) == len(scene.objects) and {concepts(p) for p in phrases} == objs, (text, phrases)
        regions = shapes_regions(text, 2, 32, 32)
        assert (regions is not None) == (len(scene.objects) == 2) == has_layout(text), text
        if regions:
            assert [r.text for r in regions] == phrases and all(r.text in text for r in regions)
            columns = bool(regions[0].mask[0, :, 0].all() and not regions[0].mask[0, :, -1].any())
            motions = {o.motion for o in scene.objects}
            if motions & {"up", "down"}:  # a vertical mover: left / right bands
                assert columns, text
            elif motions & {"left", "right"}:  # a horizontal mover: top / bottom bands
                assert not columns, text


@pytest.mark.parametrize(
    "prompt, texts, columns",
    [
        ("a crimson box sinking and a teal square growing", ["a crimson box sinking", "a teal square growing"], True),
        (
            "There are a big golden orb rising, and a teal tile staying put over a jet black backdrop.",
            ["a big golden orb rising", "a teal tile staying put"],
            True,
        ),
        (
            "we see an emerald wedge travelling to the left while a sapphire dot stays put",
            ["an emerald wedge travelling to the left", "a sapphire dot stays put"],
            False,
        ),
        (
            "On a slate gray canvas, footage of a ruby cube gliding rightwards and an ivory sphere resting",
            ["a ruby cube gliding rightwards", "an ivory sphere resting"],
            False,
        ),
        (
            "a scarlet ball that slides left, a lime green block that is stationary, on grey",
            ["a scarlet ball that slides left", "a lime green block that is stationary"],
            False,
        ),
    ],
)
def test_layout_of_user_prompts(prompt, texts, columns):
    regions = shapes_regions(prompt, 2, 32, 32)
    assert [r.text for r in regions] == texts
    assert bool(regions[0].mask[0, :, :16].all() and not regions[0].mask[0, :, 16:].any()) == columns


def test_no_layout_without_two_coloured_objects():
    assert shapes_regions("a crimson orb sinking against an ebony backdrop", 2, 32, 32) is None
    assert shapes_regions("an orb and a tile", 2, 32, 32) is None  # no colours
    assert not has_layout("a teal orb and a crimson crimson tile and a cyan ball") and not has_layout(None)


def test_clip_regions_read_training_synonyms():
    ds = ShapesWorldDataset(24, seed=8, num_frames=3, height=32, width=32, p_two_objects=1.0)
    laid_out = 0
    for i in range(len(ds)):
        item = ds[i]
        regions = clip_regions(item["caption"], json.loads(item["scene"]), item["video"])
        if regions is None:
            continue
        laid_out += 1
        for r in regions:
            (color,) = set(cap.mentions(r.text, "color"))
            rgb = torch.tensor(COLORS[color]) / 127.5 - 1
            pixels = (item["video"] - rgb[:, None, None]).abs().amax(1) < 0.02
            assert pixels.any() and r.mask.bool()[pixels].all(), (item["caption"], r.text)
    assert laid_out > 12


@pytest.mark.parametrize("prompt", ["a dog running", "a red car driving left", "sunset over the sea", ""])
def test_prompt_warning_names_what_the_model_draws(prompt):
    message = prompt_warning(prompt)
    assert message.startswith("this model draws only coloured circles, squares and triangles")
    assert repr(prompt) in message


@pytest.mark.parametrize("name", ["caption", "validation_caption", "novel_caption"])
def test_no_prompt_warning_for_any_caption_set(name):
    make = {"caption": caption, "validation_caption": validation_caption, "novel_caption": novel_caption}[name]
    rng = np.random.default_rng(5)
    for _ in range(300):
        assert prompt_warning(make(sample_scene(rng, p_two_objects=0.5), rng)) is None

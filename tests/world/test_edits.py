import json

import numpy as np
import pytest
import torch

import t2v.world.captions as cap
from t2v.world import ObjectSpec, SceneSpec, render, scene_is_held_out
from t2v.world.edits import (
    EDIT_KINDS,
    EDIT_NOVEL_WORDS,
    EDIT_TRAIN_WORDS,
    EDIT_VALIDATION_WORDS,
    TEMPLATES,
    Edit,
    ShapesEditDataset,
    apply_edit,
    canonical_instruction,
    edit_instruction,
    edit_to_dict,
    render_edit_pair,
    sample_edit,
)
from t2v.world.shapes import BACKGROUNDS, COLORS


def pairs(n=150, seed=0, split="train"):
    rng = np.random.default_rng(seed)
    return [sample_edit(rng, split, p_two_objects=0.5) for _ in range(n)]


def changed_pixels(scene, edit, source, edited):
    """Check that the pixels that change are the edited attribute's, and return the changed mask."""
    changed = (source != edited).any(-1)
    assert changed.any(), (scene, edit)  # the edit shows
    if edit.kind == "background":
        old, new = BACKGROUNDS[scene.background], BACKGROUNDS[edit.value]
        assert np.array_equal(changed, (source == old).all(-1))  # every background pixel, nothing else
        assert (edited[changed] == new).all()
        return changed
    obj = scene.objects[edit.target]
    old, new = COLORS[obj.color], COLORS[edit.value if edit.kind == "color" else obj.color]
    if edit.kind == "color":
        assert np.array_equal(changed, (source == old).all(-1))  # the object's pixels, all of them
        assert (edited[changed] == new).all()
        return changed
    background = BACKGROUNDS[scene.background]  # shape or size: only the object's colour and the background swap
    for clip in (source, edited):
        pixels = clip[changed]
        assert ((pixels == old).all(-1) | (pixels == background).all(-1)).all(), (scene, edit)
    return changed


def test_edit_pairs_differ_only_in_the_edited_attribute():
    seen = set()
    for i, (scene, edit) in enumerate(pairs()):
        rng = np.random.default_rng(i)
        source, edited = render_edit_pair(scene, edit, 4, 32, 48, rng)
        assert source.shape == edited.shape == (4, 32, 48, 3) and source.dtype == np.uint8
        changed_pixels(scene, edit, source, edited)
        if edit.kind != "size":  # the source is the scene's own clip for the same random state
            assert np.array_equal(source, render(scene, 4, 32, 48, np.random.default_rng(i)))
        seen.add(edit.kind)
    assert seen == set(EDIT_KINDS)


@pytest.mark.parametrize("value", ["large", "small"])
def test_a_resized_object_keeps_its_centre_and_the_other_object(value):
    small = ObjectSpec("square", "red", "small" if value == "large" else "large", "right")
    other = ObjectSpec("circle", "blue", "large", "left")
    scene, edit = SceneSpec("black", (small, other)), Edit("size", value, 0)
    source, edited = render_edit_pair(scene, edit, 5, 64, 64, np.random.default_rng(3))
    changed_pixels(scene, edit, source, edited)
    for f in range(5):
        a, b = ((clip[f] == COLORS["red"]).all(-1) for clip in (source, edited))
        assert (b.sum() > a.sum()) == (value == "large")
        for axis in (0, 1):
            assert abs(np.nonzero(a)[axis].mean() - np.nonzero(b)[axis].mean()) <= 0.5  # the same centre
        blue = (source[f] == COLORS["blue"]).all(-1)
        assert np.array_equal(blue, (edited[f] == COLORS["blue"]).all(-1))  # the other object is untouched


def test_train_edits_never_make_a_held_out_composition():
    kinds = set()
    for scene, edit in pairs(600):
        assert not scene_is_held_out(scene) and not scene_is_held_out(apply_edit(scene, edit)), (scene, edit)
        kinds.add(edit.kind)
    assert kinds == set(EDIT_KINDS)
    for scene, edit in pairs(100, split="held_out"):
        assert not scene_is_held_out(scene) and scene_is_held_out(apply_edit(scene, edit)), (scene, edit)


def test_phrasing_sets_are_disjoint_and_each_held_out_phrasing_has_its_own_word():
    for key, (train, validation, novel) in TEMPLATES.items():
        assert not (set(train) & set(validation) or set(train) & set(novel) or set(validation) & set(novel)), key
        for templates, own in ((validation, EDIT_VALIDATION_WORDS), (novel, EDIT_NOVEL_WORDS)):
            for t in templates:
                assert cap.words(t.format(obj="", value="", a_value="")) & own, t
    assert not EDIT_VALIDATION_WORDS & EDIT_NOVEL_WORDS
    assert not (EDIT_VALIDATION_WORDS | EDIT_NOVEL_WORDS) & (EDIT_TRAIN_WORDS | cap.GRAMMAR_WORDS)


def instructions(split, n=1500, seed=5):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scene, edit = sample_edit(rng, p_two_objects=0.5)
        out.append((scene, edit, edit_instruction(scene, edit, rng, split)))
    return out


def test_train_instructions_use_training_words_only():
    held = EDIT_VALIDATION_WORDS | EDIT_NOVEL_WORDS | cap.VALIDATION_WORDS | cap.NOVEL_WORDS
    texts = []
    for scene, edit, text in instructions("train"):
        assert cap.words(text) <= EDIT_TRAIN_WORDS, text
        assert not cap.words(text) & held, text
        texts.append(text)
    assert len(set(texts)) > 600  # varied
    for example in ("make it bigger", "change the background to white", "turn it into a square"):
        assert example in texts


@pytest.mark.parametrize("split, own, other", [("validation", EDIT_VALIDATION_WORDS, EDIT_NOVEL_WORDS),
                                               ("novel", EDIT_NOVEL_WORDS, EDIT_VALIDATION_WORDS)])  # fmt: skip
def test_held_out_instructions_have_their_own_words(split, own, other):
    for scene, edit, text in instructions(split, n=500):
        assert cap.words(text) & own and not cap.words(text) & other, text


@pytest.mark.parametrize("split", ["train", "validation", "novel"])
def test_instructions_name_the_new_value_and_single_out_the_object(split):
    for scene, edit, text in instructions(split, n=500):
        if edit.kind == "color":
            assert cap.mentions(text, "color")[-1] == edit.value, text
        elif edit.kind == "shape":
            assert cap.mentions(text, "shape")[-1] == edit.value, text
        elif edit.kind == "background":
            assert cap.mentions(text, "background")[-1] == edit.value, text
        if len(scene.objects) == 2:
            assert "it" not in cap.words(text), text  # two objects: the instruction says which
            colors = cap.mentions(text, "color")
            named = colors[:-1] if edit.kind == "color" else colors if edit.target is not None else []
            if named:  # a colour in the reference is the target's
                assert named == [scene.objects[edit.target].color], text


def test_canonical_instruction():
    scene = SceneSpec("black", (ObjectSpec("circle", "red", "small", "left"),))
    assert canonical_instruction(scene, Edit("color", "blue", 0)) == "make the red circle blue"
    assert canonical_instruction(scene, Edit("shape", "square", 0)) == "turn the red circle into a square"
    assert canonical_instruction(scene, Edit("background", "white")) == "change the background to white"
    assert canonical_instruction(scene, Edit("size", "large", 0)) == "make the red circle large"


def test_invalid_edits_are_refused():
    scene = SceneSpec("black", (ObjectSpec("circle", "red", None, "growing"),))
    with pytest.raises(ValueError, match="value of a color edit"):
        Edit("color", "pink", 0)
    with pytest.raises(ValueError, match="target must be None exactly for a background edit"):
        Edit("background", "white", 0)
    with pytest.raises(ValueError, match="kind must be one of"):
        Edit("motion", "left", 0)
    with pytest.raises(ValueError, match="changes nothing"):
        apply_edit(scene, Edit("color", "red", 0))
    with pytest.raises(ValueError, match="no size to edit"):
        apply_edit(scene, Edit("size", "large", 0))
    with pytest.raises(ValueError, match="has 1 object"):
        apply_edit(scene, Edit("shape", "square", 1))
    white = SceneSpec("black", (ObjectSpec("circle", "white", "small", "left"),))
    with pytest.raises(ValueError, match="too similar"):
        apply_edit(white, Edit("background", "white"))
    with pytest.raises(ValueError, match="split"):
        sample_edit(np.random.default_rng(0), "validation")


def test_edit_dataset_items():
    ds = ShapesEditDataset(length=20, seed=1, num_frames=3, height=32, width=32, p_two_objects=0.5)
    item = ds[4]
    assert item["source"].shape == item["edited"].shape == (3, 3, 32, 32)
    assert item["source"].dtype == torch.float32 and -1 <= item["source"].min() and item["edited"].max() <= 1
    assert not torch.equal(item["source"], item["edited"]) and isinstance(item["instruction"], str)
    assert torch.equal(ds[4]["edited"], item["edited"]) and ds[4]["instruction"] == item["instruction"]
    record = json.loads(item["edit"])
    assert set(record) == {"kind", "target", "from", "value", "source", "edited"}
    scene, edit = sample_edit(np.random.default_rng(0))
    assert edit_to_dict(scene, edit)["from"] != edit.value
    held = ShapesEditDataset(length=5, num_frames=2, height=32, width=32, split="held_out", phrasing="novel")
    assert all(cap.words(held[i]["instruction"]) & EDIT_NOVEL_WORDS for i in range(5))
    with pytest.raises(ValueError, match="split"):
        ShapesEditDataset(length=5, phrasing="test")

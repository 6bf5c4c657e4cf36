import numpy as np
import pytest
import torch

import t2v.world.captions as cap
from t2v.world import sample_scene
from t2v.world.stills import STILL_LEADS, ShapesStillsDataset, canonical_still_caption, still_caption


STILL_TRAIN_WORDS = {w for lead in STILL_LEADS[cap.TRAIN] for w in cap.words(lead)}
MOTION_ONLY = {
    w for sets in cap.VOCABULARY["motion"].values() for s in sets for p in s for w in cap.words(" ".join(p))
}
MOTION_ONLY -= cap.words("a small red circle on a black background the") | {"and", "is", "that", "to"}


def captions(split, seed=3, n=2000):
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, p_two_objects=0.5) for _ in range(n)]
    return [(s, still_caption(s, rng, split)) for s in scenes]


def test_still_captions_keep_to_the_training_words_and_say_no_motion():
    held = cap.VALIDATION_WORDS | cap.NOVEL_WORDS
    texts = [t for _, t in captions(cap.TRAIN)]
    for text in texts:
        assert cap.words(text) <= cap.GRAMMAR_WORDS | STILL_TRAIN_WORDS, text
        assert not cap.words(text) & held, text
        assert not cap.words(text) & MOTION_ONLY, text
    assert not STILL_TRAIN_WORDS & held
    assert len(set(texts)) > 500  # varied
    assert 0.2 < np.mean([t.startswith(("a picture of", "an image of", "there")) for t in texts]) < 0.6


@pytest.mark.parametrize("split, own", [(cap.VALIDATION, "VALIDATION"), (cap.NOVEL, "NOVEL")])
def test_held_out_still_captions_have_their_own_words(split, own):
    held = getattr(cap, f"{own}_WORDS") | {w for lead in STILL_LEADS[split] for w in cap.words(lead)}
    for scene, text in captions(split):
        assert cap.words(text) & held, text
        assert {o.color for o in scene.objects} <= set(cap.mentions(text, "color")), text  # (+ the background's)
        assert sorted(cap.mentions(text, "shape")) == sorted(o.shape for o in scene.objects), text


def test_canonical_still_caption():
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, p_two_objects=0.0)
    text = canonical_still_caption(scene)
    assert text.endswith(f"on a {scene.background} background") and scene.objects[0].color in text


def test_stills_dataset_items():
    ds = ShapesStillsDataset(length=50, seed=1, frames_per_item=3, p_two_objects=0.5)
    item = ds[4]
    assert item["video"].shape == (3, 3, 64, 64) and item["video"].dtype == torch.float32
    assert -1 <= item["video"].min() and item["video"].max() <= 1
    assert torch.equal(ds[4]["video"], item["video"]) and ds[4]["caption"] == item["caption"]
    assert all("purple triangle" not in ds[i]["scene"] for i in range(50))  # held-out compositions stay out
    with pytest.raises(ValueError, match="frames_per_item"):
        ShapesStillsDataset(length=5, frames_per_item=0)

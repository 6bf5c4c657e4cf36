"""Still frames of the Shapes world with captions of what a frame shows, for text-to-image models.

A still's caption names each object's colour, shape and (when it has one) size, and often the
background, in the three vocabularies of `t2v.world.captions` (train, validation, novel), with openings
of its own ("a picture of ..."): "a picture of a small scarlet disc on a black background". No motion
words: a frame does not show motion. Held-out compositions (a purple triangle) stay held out, as in
the video world.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from t2v.world.captions import (
    NOVEL,
    SHAPE_WORDS,
    TRAIN,
    VALIDATION,
    VOCABULARY,
    _article,
    _background,
    _choose,
    _pick,
)
from t2v.world.shapes import ObjectSpec, SceneSpec, render, sample_scene, scene_to_dict


STILL_LEADS = (  # (train, validation, novel) openings of a still's caption
    ("", "", "there is", "a picture of", "an image of"),
    ("a photo of", "a drawing of"),
    ("an illustration of", "a snapshot of", "a rendering of"),
)
P_PLAIN = 0.35  # share of training captions with the canonical words only ("a small red circle on a black background")


def _still_object(obj: ObjectSpec, rng: np.random.Generator, split: int, plain: bool) -> str:
    kinds = ["color", "shape"] + (["size"] if obj.size is not None and rng.random() < 0.7 else [])
    forced = _pick(rng, kinds)
    if plain:
        word = {k: VOCABULARY[k][getattr(obj, k)][TRAIN][0] for k in kinds}
    else:
        word = {k: _choose(rng, VOCABULARY[k][getattr(obj, k)], split, k == forced) for k in kinds}
    return _article(" ".join(([word["size"]] if "size" in word else []) + [word["color"], word["shape"]]))


def still_caption(scene: SceneSpec, rng: np.random.Generator, split: int = TRAIN) -> str:
    """A caption of one frame of `scene`: "an image of a large cyan box against a gray background".

    split TRAIN: the training vocabulary (P_PLAIN of them with the canonical words only); VALIDATION or
    NOVEL: every object has a word of that split's own set, as `validation_caption` / `novel_caption`."""
    plain = split == TRAIN and rng.random() < P_PLAIN
    objs = list(scene.objects)
    if len(objs) == 2 and rng.random() < 0.5:
        objs = objs[::-1]
    text = " and ".join(_still_object(o, rng, split, plain) for o in objs)
    if plain:
        return text + (f" on a {scene.background} background" if rng.random() < 0.5 else "")
    lead = _choose(rng, STILL_LEADS, split)
    if lead:
        text = f"{lead.replace('there is', 'there are') if len(objs) == 2 else lead} {text}"
    return _background(scene, text, lead, rng, split)


def canonical_still_caption(scene: SceneSpec) -> str:
    """The fixed evaluation phrasing of a still: "a small red circle on a black background"."""
    objs = " and ".join(
        _article(f"{o.size + ' ' if o.size else ''}{o.color} {SHAPE_WORDS[o.shape][TRAIN][0]}") for o in scene.objects
    )
    return f"{objs} on a {scene.background} background"


class ShapesStillsDataset(torch.utils.data.Dataset):
    """`length` items, each `frames_per_item` frames of one rendered clip with a still caption;
    item i depends only on (seed, i). Items: "video" float32 [frames_per_item, 3, H, W] in [-1, 1],
    "caption" str, "scene" JSON string; frames are drawn from a 16-frame clip."""

    CLIP_FRAMES = 16

    def __init__(
        self,
        length: int,
        seed: int = 0,
        frames_per_item: int = 4,
        height: int = 64,
        width: int = 64,
        p_two_objects: float = 0.25,
        split: str = "train",
    ):
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        if not 1 <= frames_per_item <= self.CLIP_FRAMES:
            raise ValueError(f"frames_per_item must be in [1, {self.CLIP_FRAMES}], got {frames_per_item}")
        self.length, self.seed, self.split, self.k = length, seed, split, frames_per_item
        self.height, self.width, self.p_two_objects = height, width, p_two_objects

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for length {self.length}")
        rng = np.random.default_rng([self.seed, i % self.length, 7])
        scene = sample_scene(rng, split=self.split, p_two_objects=self.p_two_objects)
        frames = render(scene, self.CLIP_FRAMES, self.height, self.width, rng)
        picked = np.sort(rng.choice(self.CLIP_FRAMES, self.k, replace=False))
        video = torch.from_numpy(frames[picked]).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return {"video": video, "caption": still_caption(scene, rng), "scene": json.dumps(scene_to_dict(scene))}


__all__ = ["NOVEL", "STILL_LEADS", "VALIDATION", "ShapesStillsDataset", "canonical_still_caption", "still_caption"]

"""Torch dataset of rendered Shapes-world clips with grammar captions."""

from __future__ import annotations

import json

import numpy as np
import torch

from t2v.world.captions import caption
from t2v.world.shapes import render, sample_scene, scene_to_dict


class ShapesWorldDataset(torch.utils.data.Dataset):
    """`length` procedurally generated clips; item i depends only on (seed, i).

    Items are dicts: "video" float32 [F, 3, H, W] in [-1, 1], "caption" str,
    "scene" JSON string of the SceneSpec (see scene_from_dict).
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        p_two_objects: float = 0.25,
        split: str = "train",
    ):
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        if split not in ("train", "held_out"):
            raise ValueError(f"split must be one of ('train', 'held_out'), got {split!r}")
        self.length, self.seed, self.split = length, seed, split
        self.num_frames, self.height, self.width, self.p_two_objects = num_frames, height, width, p_two_objects

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for length {self.length}")
        i = i % self.length
        rng = np.random.default_rng([self.seed, i])
        scene = sample_scene(rng, split=self.split, p_two_objects=self.p_two_objects)
        frames = render(scene, self.num_frames, self.height, self.width, rng)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return {"video": video, "caption": caption(scene, rng), "scene": json.dumps(scene_to_dict(scene))}

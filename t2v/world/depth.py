"""Exact depth maps of rendered Shapes-world frames, for depth ControlNets and their judges.

The world draws its objects in order, each over the ones before: object i is in front of objects < i where
they overlap. A depth map says so in the convention of monocular depth models (MiDaS, DPT): near is bright.
The background is 0 (far); object i of n is at 255 * (i + 1 + n) / (2 n) (one object: 255; two: 191 behind,
255 in front). Pixels are assigned by exact palette colour (rendered frames have no anti-aliasing).

The world's own layouts keep two objects apart (one band each); `render_with_masks(..., overlap=True)` moves
the second onto the first, so that depth has something to say, and `ShapesDepthStillsDataset` trains on both.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from t2v.world.shapes import BACKGROUNDS, COLORS, SceneSpec, sample_scene, scene_to_dict, shape_mask, trajectories
from t2v.world.stills import still_caption


def depth_levels(n: int) -> list[int]:
    """The depth value of each of n objects, back to front."""
    return [round(255 * (i + 1 + n) / (2 * n)) for i in range(n)]


def world_depth_maps(frames: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """uint8 [F, H, W, 3] depth maps (grey, near = bright) of uint8 frames [F, H, W, 3] rendered from `scene`."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
    depth = np.zeros(frames.shape[:3], np.uint8)
    for obj, level in zip(scene.objects, depth_levels(len(scene.objects))):
        depth[(frames == np.array(COLORS[obj.color], np.uint8)).all(-1)] = level
    return np.repeat(depth[..., None], 3, axis=-1)


def overlapping_tracks(tracks: list[np.ndarray], rng: np.random.Generator, height: int, width: int) -> list:
    """Two objects' tracks with the second moved onto the first: it follows object 0's path at an offset of
    0.45-0.8 of the sum of their radii in a random direction (kept on the canvas), so they overlap and the one
    behind still shows."""
    if len(tracks) != 2:
        raise ValueError(f"overlapping_tracks needs two objects' tracks, got {len(tracks)}")
    a, b = tracks
    radii = float(a[:, 2].max() + b[:, 2].max()) / 2
    angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.45, 0.8) * radii
    moved = b.copy()
    moved[:, 0] = np.clip(a[:, 0] + np.round(dist * np.cos(angle)), b[:, 2] / 2, width - b[:, 2] / 2)
    moved[:, 1] = np.clip(a[:, 1] + np.round(dist * np.sin(angle)), b[:, 2] / 2, height - b[:, 2] / 2)
    return [a, moved]


def render_with_masks(
    scene: SceneSpec, num_frames: int, height: int, width: int, rng: np.random.Generator, overlap: bool = False
) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 frames [F, H, W, 3] of `scene` and each object's own mask [F, H, W] (before occlusion), as
    `render` draws them; overlap=True (two objects) moves the second onto the first (`overlapping_tracks`)."""
    tracks = trajectories(scene, num_frames, height, width, rng)
    if overlap:
        tracks = overlapping_tracks(tracks, rng, height, width)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[:] = BACKGROUNDS[scene.background]
    masks = []
    for obj, track in zip(scene.objects, tracks):
        mask = np.stack([shape_mask(obj.shape, cx, cy, d, height, width) for cx, cy, d in track])
        frames[mask] = COLORS[obj.color]
        masks.append(mask)
    return frames, masks


class ShapesDepthStillsDataset(torch.utils.data.Dataset):
    """Stills as `t2v.world.stills.ShapesStillsDataset` (same items: "video", "caption", "scene"), where a
    two-object scene overlaps with probability `p_overlap` (the second object in front), for depth ControlNets."""

    CLIP_FRAMES = 16

    def __init__(self, length, seed=0, frames_per_item=4, height=64, width=64, p_two_objects=0.5, p_overlap=0.6):
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        self.length, self.seed, self.k, self.height, self.width = length, seed, frames_per_item, height, width
        self.p_two_objects, self.p_overlap = p_two_objects, p_overlap

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for length {self.length}")
        rng = np.random.default_rng([self.seed, i % self.length, 13])
        scene = sample_scene(rng, split="train", p_two_objects=self.p_two_objects)
        overlap = len(scene.objects) == 2 and rng.random() < self.p_overlap
        frames, _ = render_with_masks(scene, self.CLIP_FRAMES, self.height, self.width, rng, overlap)
        picked = np.sort(rng.choice(self.CLIP_FRAMES, self.k, replace=False))
        video = torch.from_numpy(frames[picked]).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        return {"video": video, "caption": still_caption(scene, rng), "scene": json.dumps(scene_to_dict(scene))}

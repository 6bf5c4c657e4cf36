"""Text-video datasets for training.

Three kinds yield {"video": [F, 3, H, W] in [-1, 1], "caption": str}:

- the Shapes world, made on the fly (t2v.world)
- still frames of the Shapes world with captions of what a frame shows (t2v.world.stills), for the
  text-to-image stage: F frames of one clip per item
- a folder of videos with captions, WebVid style: `captions.csv` (columns `video,caption`) or
  `captions.jsonl` (one {"video": ..., "caption": ...} per line), paths relative to the folder.

"shapes_depth_stills" stills whose two objects often overlap (t2v.world.depth, for depth ControlNets), and
"shapes_edits" yields the world's edit pairs for the edit stage (t2v.world.edits.ShapesEditDataset:
"source" and "edited" clips, an "instruction").
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from t2v.video_io import read_video
from t2v.world import ShapesWorldDataset
from t2v.world.depth import ShapesDepthStillsDataset
from t2v.world.edits import ShapesEditDataset
from t2v.world.stills import ShapesStillsDataset

from .config import DataConfig


class TextVideoFolder(Dataset):
    """Videos + captions from a folder; clips of `num_frames` frames, centre-cropped and resized."""

    def __init__(self, root: str | Path, num_frames: int = 16, height: int = 64, width: int = 64, seed: int = 0):
        self.root = Path(root)
        if (self.root / "captions.csv").is_file():
            with open(self.root / "captions.csv", newline="") as f:
                rows = list(csv.DictReader(f))
        elif (self.root / "captions.jsonl").is_file():
            lines = (self.root / "captions.jsonl").read_text().splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
        else:
            raise ValueError(f"{self.root} has neither captions.csv nor captions.jsonl")
        self.items = []
        for i, row in enumerate(rows):
            if "video" not in row or "caption" not in row:
                raise ValueError(f"{self.root}: caption row {i + 1} needs 'video' and 'caption', got {sorted(row)}")
            path = (self.root / row["video"]).resolve()
            if self.root.resolve() not in path.parents:
                raise ValueError(f"{self.root}: caption row {i + 1} points outside the folder: {row['video']!r}")
            self.items.append((path, row["caption"]))
        if not self.items:
            raise ValueError(f"{self.root}: no videos listed")
        self.num_frames, self.height, self.width, self.seed = num_frames, height, width, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        path, caption = self.items[i]
        frames, _ = read_video(path)
        rng = np.random.default_rng([self.seed, i])
        if len(frames) >= self.num_frames:
            start = int(rng.integers(0, len(frames) - self.num_frames + 1))
            frames = frames[start : start + self.num_frames]
        else:  # too short: hold the last frame
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.num_frames - len(frames), 0)])
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
        return {"video": resize_crop(video, self.height, self.width), "caption": caption}


def resize_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize [F, 3, h, w] to cover (height, width), then centre-crop."""
    h, w = video.shape[-2:]
    scale = max(height / h, width / w)
    if scale != 1:
        size = (max(height, round(h * scale)), max(width, round(w * scale)))
        video = F.interpolate(video, size=size, mode="area" if scale < 1 else "bilinear")
    h, w = video.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return video[..., top : top + height, left : left + width]


def make_dataset(config: DataConfig) -> Dataset:
    if config.kind == "folder":
        if not config.path:
            raise ValueError("data.path is required when data.kind is 'folder'")
        return TextVideoFolder(config.path, config.num_frames, config.height, config.width, config.seed)
    world = {  # the Shapes world's datasets, made on the fly: kind -> (class, what num_frames is called there)
        "shapes": (ShapesWorldDataset, "num_frames"),
        "shapes_stills": (ShapesStillsDataset, "frames_per_item"),
        "shapes_depth_stills": (ShapesDepthStillsDataset, "frames_per_item"),
        "shapes_edits": (ShapesEditDataset, "num_frames"),
    }
    if config.kind not in world:
        raise ValueError(f"data.kind must be one of {', '.join(map(repr, DATA_KINDS))}, got {config.kind!r}")
    cls, frames = world[config.kind]
    return cls(
        length=config.length, seed=config.seed, height=config.height, width=config.width,
        p_two_objects=config.p_two_objects, **{frames: config.num_frames},
    )  # fmt: skip


DATA_KINDS = ("shapes", "shapes_stills", "shapes_depth_stills", "shapes_edits", "folder")


def collate(batch: list[dict]) -> dict:
    """Tensors stacked, everything else listed, for the keys every item has (Shapes-world clips' "scene"
    specs for layout_regions; edit pairs' "source", "edited", "instruction")."""
    keys = [k for k in batch[0] if all(k in b for b in batch)]
    stacked = {k: torch.is_tensor(batch[0][k]) for k in keys}
    return {k: torch.stack([b[k] for b in batch]) if stacked[k] else [b[k] for b in batch] for k in keys}

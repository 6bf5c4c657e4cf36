"""Write a few Shapes-world clips to disk (GIFs + captions.jsonl) for eyeballing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from t2v.video_io import write_video
from t2v.world.captions import caption
from t2v.world.shapes import render, sample_scene, scene_to_dict


def write_samples(
    n: int, out_dir: str | Path, seed: int = 0, num_frames: int = 16, height: int = 64, width: int = 64
) -> list[Path]:
    """Write clip_000.gif ... clip_{n-1}.gif and captions.jsonl ({"file", "caption", "scene"} per line) to out_dir.

    Clip i is drawn with np.random.default_rng([seed, i]), like ShapesWorldDataset; GIFs are
    8 fps and existing files are overwritten. Returns the GIF paths.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, lines = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng)
        frames = render(scene, num_frames, height, width, rng)
        path = out / f"clip_{i:03d}.gif"
        write_video(path, frames, fps=8, overwrite=True)
        paths.append(path)
        lines.append(json.dumps({"file": path.name, "caption": caption(scene, rng), "scene": scene_to_dict(scene)}))
    (out / "captions.jsonl").write_text("".join(line + "\n" for line in lines))
    return paths

"""Text-to-image evaluation: make pictures of Shapes-world stills, judge them from the pixels.

    t2v eval --images 48 --seeds 2

Prompt sets as for videos (t2v.eval.run), for one frame: seen compositions in the still captions'
canonical phrasing ("a small red circle on a black background"), held-out compositions (purple
triangles), and novel / validation phrasings in the held-out words ("a snapshot of a petite crimson
orb against an ebony backdrop"). A picture is all-correct when its objects' colours, shapes and sizes,
their count and the background are right.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from t2v.eval.analyse import analyse_video
from t2v.world import SceneSpec, sample_scene, scene_to_dict
from t2v.world.captions import NOVEL, VALIDATION
from t2v.world.stills import canonical_still_caption, still_caption


IMAGE_SPLITS = ("seen", "held_out", "novel", "validation")
IMAGE_ATTRIBUTES = ("color", "shape", "size", "count", "background", "all_correct")


@dataclass(frozen=True)
class StillPrompt:
    split: str
    prompt: str
    scene: SceneSpec


def still_scene(rng: np.random.Generator, split: str = "train", p_two_objects: float = 0.25) -> SceneSpec:
    """A scene whose objects all have a size (a frame of a growing object has no one size to judge)."""
    while True:
        scene = sample_scene(rng, split=split, p_two_objects=p_two_objects)
        if all(o.size is not None for o in scene.objects):
            return scene


def image_prompts(
    n: int = 48, seed: int = 1234, p_two_objects: float = 0.25, splits: tuple[str, ...] = ("seen", "held_out", "novel")
) -> list[StillPrompt]:
    """`n` still prompts per split, deterministic from `seed`; each split independent of the others asked for."""
    unknown = [s for s in splits if s not in IMAGE_SPLITS]
    if unknown:
        raise ValueError(f"splits must be among {IMAGE_SPLITS}, got {unknown}")
    prompts = []
    for i, split in enumerate(IMAGE_SPLITS):
        if split not in splits:
            continue
        rng, words = np.random.default_rng([seed, 20 + i]), np.random.default_rng([seed, 30 + i])
        for _ in range(n):
            scene = still_scene(rng, "held_out" if split == "held_out" else "train", p_two_objects)
            if split in ("seen", "held_out"):
                text = canonical_still_caption(scene)
            else:
                text = still_caption(scene, words, NOVEL if split == "novel" else VALIDATION)
            prompts.append(StillPrompt(split, text, scene))
    return prompts


def judge_image(scene: SceneSpec, image: np.ndarray) -> dict[str, bool]:
    """Per-attribute correctness of a uint8 picture [H, W, 3] for a scene (objects matched by colour);
    all_correct = colour, shape, size, count and background."""
    analysis = analyse_video(image[None])
    found = {o.color: o for o in analysis.objects}
    matched = [(o, found.get(o.color)) for o in scene.objects]
    result = {
        "color": all(t is not None for _, t in matched),
        "shape": all(t is not None and t.shape == o.shape for o, t in matched),
        "size": all(t is not None and t.size == o.size for o, t in matched),
        "count": len(analysis.objects) == len(scene.objects),
        "background": analysis.background == scene.background,
    }
    result["all_correct"] = all(result.values())
    return result


def evaluate_images(pipe, prompts: list[StillPrompt], seeds=(0, 1), batch_size: int = 16, progress: bool = True, **kw):
    """Make every prompt with every seed and judge it; {"results": [...], "summary": {...}, "seconds": s}."""
    jobs = [(p, s) for p in prompts for s in seeds]
    results, start = [], time.time()
    for i in tqdm(range(0, len(jobs), batch_size), desc="eval images", disable=not progress):
        batch = jobs[i : i + batch_size]
        generators = [torch.Generator().manual_seed(s) for _, s in batch]
        images = pipe([p.prompt for p, _ in batch], generator=generators, output_type="np", **kw).images
        for (p, s), image in zip(batch, images):
            verdict = judge_image(p.scene, (np.clip(image, 0, 1) * 255).round().astype(np.uint8))
            results.append(
                {"split": p.split, "prompt": p.prompt, "seed": s, "scene": scene_to_dict(p.scene), **verdict}
            )
    return {"results": results, "summary": summarise_images(results), "seconds": round(time.time() - start, 1)}


def summarise_images(results: list[dict]) -> dict:
    summary = {}
    for split in IMAGE_SPLITS:
        rows = [r for r in results if r["split"] == split]
        if rows:
            summary[split] = {a: float(np.mean([r[a] for r in rows])) for a in IMAGE_ATTRIBUTES}
            summary[split]["images"] = len(rows)
    return summary


def images_markdown(summary: dict) -> str:
    lines = ["| set | images | " + " | ".join(IMAGE_ATTRIBUTES) + " |", "|" + "---|" * (len(IMAGE_ATTRIBUTES) + 2)]
    for split, s in summary.items():
        lines.append(
            f"| {split} | {s['images']} | " + " | ".join(f"{100 * s[a]:.0f}%" for a in IMAGE_ATTRIBUTES) + " |"
        )
    return "\n".join(lines) + "\n"

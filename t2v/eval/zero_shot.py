"""Zero-shot video evaluation: Text2Video-Zero videos of Shapes-world stills, judged from the frames.

    t2v eval --zero-shot 48 --seeds 2

Each prompt is a still's caption ("a small red circle on a black background") with a motion field,
cycled over right, left, down, up and zoom. A video is judged on:
  attributes    colour, shape, size, count and background right in the first frame (t2v.eval.images);
  kept          the fraction of frames whose objects keep the first frame's colour and shape;
  direction     the object's centroid moves along the requested axis and way (zoom: its area grows);
  speed         the fitted speed within SPEED_TOLERANCE of the requested (px per frame; zoom: scale per frame);
  jumps         max jump ratio (largest frame change / median change) <= JUMP_TARGET.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from t2v.eval.analyse import analyse_video, flicker, max_jump_ratio
from t2v.eval.images import image_prompts, judge_image
from t2v.world import SceneSpec, scene_to_dict


MOTIONS = {  # name -> (motion_x, motion_y, zoom) in output pixels per frame / scale per frame
    "right": (1.5, 0.0, 1.0),
    "left": (-1.5, 0.0, 1.0),
    "down": (0.0, 1.5, 1.0),
    "up": (0.0, -1.5, 1.0),
    "zoom": (0.0, 0.0, 1.06),
}
SPEED_TOLERANCE = 0.25
JUMP_TARGET = 3.0


def zero_shot_prompts(n: int = 48, seed: int = 1234) -> list[tuple]:
    """`n` (StillPrompt, motion name) pairs: seen still prompts of one object, motions cycled."""
    prompts = image_prompts(n, seed, p_two_objects=0.0, splits=("seen",))
    names = list(MOTIONS)
    return [(p, names[i % len(names)]) for i, p in enumerate(prompts)]


def track(frames: np.ndarray, color: str) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the centroid (x, y) and area of the object of `color` (NaN where absent)."""
    centroids, areas = [], []
    for frame in frames:
        found = {o.color: o for o in analyse_video(frame[None]).objects}
        o = found.get(color)
        centroids.append(o.centroids[0] if o is not None else (np.nan, np.nan))
        areas.append(o.areas[0] if o is not None else np.nan)
    return np.array(centroids, float), np.array(areas, float)


def _slope(values: np.ndarray) -> float:
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.flatnonzero(ok), values[ok], 1)[0])


def judge_motion(scene: SceneSpec, frames: np.ndarray, motion: str) -> dict:
    """Direction, speed and attribute checks of a zero-shot video (uint8 [F, H, W, 3]) of a one-object scene."""
    mx, my, zoom = MOTIONS[motion]
    first = judge_image(scene, frames[0])
    color, shape = scene.objects[0].color, scene.objects[0].shape
    kept = []
    for frame in frames:
        found = {o.color: o for o in analyse_video(frame[None]).objects}
        kept.append(color in found and found[color].shape == shape)
    centroids, areas = track(frames, color)
    if zoom != 1.0:
        measured = float(np.exp(_slope(np.log(areas)) / 2))  # area grows as scale squared
        direction = measured > 1
        speed = bool(np.isfinite(measured) and abs(measured - zoom) <= SPEED_TOLERANCE * abs(zoom - 1))
    else:
        vx, vy = _slope(centroids[:, 0]), _slope(centroids[:, 1])
        along, across = (vx, vy) if mx else (vy, vx)
        want = mx or my
        measured = along
        direction = bool(np.isfinite(along) and np.sign(along) == np.sign(want) and abs(along) > abs(across))
        speed = bool(np.isfinite(along) and abs(along - want) <= SPEED_TOLERANCE * abs(want))
    return {
        **{f"first_{k}": v for k, v in first.items()},
        "kept": float(np.mean(kept)),
        "direction": bool(direction),
        "speed": bool(speed),
        "measured": measured,
        "max_jump_ratio": max_jump_ratio(frames),
        "flicker": flicker(frames, scene.background),
    }


def evaluate_zero_shot(pipe, prompts: list[tuple], seeds=(0, 1), progress: bool = True, **kw) -> dict:
    """Make every (prompt, motion) with every seed with a TextToVideoZeroPipeline `pipe`, judge each video."""
    results, start = [], time.time()
    jobs = [(p, m, s) for p, m in prompts for s in seeds]
    for p, motion, s in tqdm(jobs, desc="eval zero-shot", disable=not progress):
        mx, my, zoom = MOTIONS[motion]
        video = pipe(p.prompt, motion_x=mx, motion_y=my, zoom=zoom, seed=s, output_type="np", **kw).images
        frames = (np.clip(np.asarray(video), 0, 1) * 255).round().astype(np.uint8)
        verdict = judge_motion(p.scene, frames, motion)
        results.append({"prompt": p.prompt, "motion": motion, "seed": s, "scene": scene_to_dict(p.scene), **verdict})
    return {"results": results, "summary": summarise_zero_shot(results), "seconds": round(time.time() - start, 1)}


def summarise_zero_shot(results: list[dict]) -> dict:
    if not results:
        return {}
    mean = lambda key: float(np.mean([r[key] for r in results]))  # noqa: E731
    return {
        "videos": len(results),
        "attributes_all_correct": mean("first_all_correct"),
        "kept_frames": mean("kept"),
        "videos_kept_95": float(np.mean([r["kept"] >= 0.95 for r in results])),
        "direction": mean("direction"),
        "speed_within_25": mean("speed"),
        "jump_ratio_within_3": float(np.mean([r["max_jump_ratio"] <= JUMP_TARGET for r in results])),
        "max_jump_ratio_median": float(np.median([r["max_jump_ratio"] for r in results])),
        "flicker": mean("flicker"),
        "by_motion": {
            m: {
                "direction": float(np.mean([r["direction"] for r in results if r["motion"] == m])),
                "speed_within_25": float(np.mean([r["speed"] for r in results if r["motion"] == m])),
                "measured_median": float(np.nanmedian([r["measured"] for r in results if r["motion"] == m])),
            }
            for m in MOTIONS
            if any(r["motion"] == m for r in results)
        },
    }


def zero_shot_markdown(summary: dict) -> str:
    if not summary:
        return ""
    s = summary
    text = (
        f"\nZero-shot videos: {s['videos']}; attributes all-correct {100 * s['attributes_all_correct']:.0f}%; "
        f"colour and shape kept in {100 * s['kept_frames']:.0f}% of frames ({100 * s['videos_kept_95']:.0f}% of "
        f"videos >= 95%); direction right {100 * s['direction']:.0f}%; speed within 25% "
        f"{100 * s['speed_within_25']:.0f}%; max jump ratio <= 3 in {100 * s['jump_ratio_within_3']:.0f}% "
        f"(median {s['max_jump_ratio_median']:.2f}); flicker {s['flicker']:.2f}\n\n"
        "| motion | requested | measured (median) | direction | speed within 25% |\n|---|---|---|---|---|\n"
    )
    for m, b in s["by_motion"].items():
        mx, my, zoom = MOTIONS[m]
        want = f"zoom {zoom:g}/frame" if zoom != 1 else f"{mx or my:+g} px/frame"
        text += f"| {m} | {want} | {b['measured_median']:.2f} | {100 * b['direction']:.0f}% | "
        text += f"{100 * b['speed_within_25']:.0f}% |\n"
    return text

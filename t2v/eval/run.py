"""Prompt-adherence evaluation: generate, then judge the frames by image analysis (never by the model).

    t2v eval -o eval/ --prompts 48 --seeds 2

Prompt sets, each from Shapes-world scenes whose ground truth is known:
  seen        compositions the training data contains, in the captions' canonical phrasing;
  held_out    compositions never produced for training (purple triangles, orange objects moving up,
              shrinking circles), canonical phrasing;
  novel       seen compositions in novel words, never trained on ("a crimson orb sinking");
  validation  seen compositions in validation words, for choosing training settings (not run by default).
Reports per-attribute and all-correct accuracy per set, plus temporal flicker, as JSON and Markdown.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from t2v.eval.analyse import JUMP_EPS, analyse_video, flicker, frame_changes, judge, max_jump_ratio
from t2v.eval.images import images_markdown
from t2v.eval.zero_shot import zero_shot_markdown
from t2v.pipelines.long_video import LongVideoPipeline, Scene
from t2v.pipelines.text_to_video import to_uint8
from t2v.request import regions_fit
from t2v.world import (
    SceneSpec,
    canonical_caption,
    novel_caption,
    sample_scene,
    scene_to_dict,
    validation_caption,
)
from t2v.world.layout import shapes_regions


SPLITS = ("seen", "held_out", "novel", "validation")
DEFAULT_SPLITS = ("seen", "held_out", "novel")
ATTRIBUTES = ("color", "shape", "size", "motion", "count", "background", "all_correct")


@dataclass(frozen=True)
class EvalPrompt:
    split: str
    prompt: str
    scene: SceneSpec


def eval_prompts(
    n: int = 48, seed: int = 1234, p_two_objects: float = 0.25, splits: tuple[str, ...] = DEFAULT_SPLITS
) -> list[EvalPrompt]:
    """`n` prompts per split of `splits` (of SPLITS), in SPLITS order, deterministic from `seed` (independent of
    the training data's seeds); each split's prompts are the same whichever other splits are asked for."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"splits must be among {SPLITS}, got {unknown}")
    rng = np.random.default_rng([seed, 7])
    prompts = []
    for _ in range(n):
        prompts.append(EvalPrompt("seen", *_canon(sample_scene(rng, split="train", p_two_objects=p_two_objects))))
    for _ in range(n):
        prompts.append(EvalPrompt("held_out", *_canon(sample_scene(rng, split="held_out"))))
    phrasing = np.random.default_rng([seed, 9])  # the words apart: the scenes do not depend on the vocabulary
    for _ in range(n):
        scene = sample_scene(rng, split="train", p_two_objects=p_two_objects)
        prompts.append(EvalPrompt("novel", novel_caption(scene, phrasing), scene))
    rng, phrasing = np.random.default_rng([seed, 8]), np.random.default_rng([seed, 10])
    for _ in range(n if "validation" in splits else 0):
        scene = sample_scene(rng, split="train", p_two_objects=p_two_objects)
        prompts.append(EvalPrompt("validation", validation_caption(scene, phrasing), scene))
    return [p for p in prompts if p.split in splits]


def _canon(scene: SceneSpec) -> tuple[str, SceneSpec]:
    return canonical_caption(scene), scene


def evaluate(
    pipe,
    prompts: list[EvalPrompt],
    seeds=(0, 1),
    batch_size: int = 4,
    progress: bool = True,
    regions: bool = False,
    **gen_kwargs,
) -> dict:
    """Generate every prompt with every seed and judge it; returns {"results": [...], "summary": {...}}.

    regions=True: two-object prompts are made one at a time with regional prompting, one band per
    object (t2v.world.layout.shapes_regions); the others are batched as usual."""
    jobs = [(p, s) for p in prompts for s in seeds]
    layout = {p.prompt: None for p in prompts}
    if regions:
        size = {
            "num_frames": gen_kwargs.get("num_frames", 16),
            "height": gen_kwargs.get("height") or pipe.default_size,
            "width": gen_kwargs.get("width") or pipe.default_size,
        }
        layout = {p.prompt: shapes_regions(p.prompt, **size) for p in prompts}
    batches = [[j] for j in jobs if layout[j[0].prompt]]
    plain = [j for j in jobs if not layout[j[0].prompt]]
    batches += [plain[i : i + batch_size] for i in range(0, len(plain), batch_size)]
    results = []
    start = time.time()
    for batch in tqdm(batches, desc="eval", disable=not progress):
        generators = [torch.Generator().manual_seed(s) for _, s in batch]
        if layout[batch[0][0].prompt]:
            frames = pipe(
                batch[0][0].prompt, generator=generators, regions=layout[batch[0][0].prompt], **gen_kwargs
            ).frames
        else:
            frames = pipe([p.prompt for p, _ in batch], generator=generators, **gen_kwargs).frames
        for (p, s), video in zip(batch, frames):
            video = to_uint8(video)
            verdict = judge(p.scene, video)
            results.append(
                {
                    "split": p.split,
                    "prompt": p.prompt,
                    "seed": s,
                    "scene": scene_to_dict(p.scene),
                    "regions": bool(layout[p.prompt]),
                    **verdict,
                    "flicker": flicker(video, p.scene.background),
                }
            )
    order = {(p.prompt, p.split, s): i for i, (p, s) in enumerate(jobs)}
    results.sort(key=lambda r: order[(r["prompt"], r["split"], r["seed"])])
    return {"results": results, "summary": summarise(results), "seconds": round(time.time() - start, 1)}


def summarise(results: list[dict]) -> dict:
    summary = {}
    for split in SPLITS:
        rows = [r for r in results if r["split"] == split]
        if rows:
            summary[split] = {a: float(np.mean([r[a] for r in rows])) for a in ATTRIBUTES}
            summary[split]["flicker"] = float(np.mean([r["flicker"] for r in rows]))
            summary[split]["videos"] = len(rows)
            two = [r["all_correct"] for r in rows if len(r["scene"]["objects"]) == 2]
            summary[split]["two_objects"] = {
                "videos": len(two),
                "all_correct": float(np.mean(two)) if two else float("nan"),
            }
    return summary


def markdown_table(summary: dict) -> str:
    head = "| set | videos | " + " | ".join(ATTRIBUTES) + " | flicker |"
    lines = [head, "|" + "---|" * (len(ATTRIBUTES) + 3)]
    for split, s in summary.items():
        cells = " | ".join(f"{100 * s[a]:.0f}%" for a in ATTRIBUTES)
        lines.append(f"| {split} | {s['videos']} | {cells} | {s['flicker']:.2f} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str | Path, settings: dict) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"settings": settings, **report}
    json_path, md_path = out / "eval.json", out / "eval.md"
    for path, text in ((json_path, json.dumps(report, indent=1)), (md_path, _markdown(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path, md_path


def video_markdown(report: dict) -> str:
    """The edit and control sections of eval.md."""
    from t2v.eval.controls import controls_markdown
    from t2v.eval.edits import edits_markdown

    text = ""
    if "edits" in report:
        e = report["edits"]["settings"]
        base = report["edits"].get("frame_by_frame", {}).get("seen", {}).get("flicker")
        text += (
            f"\nEdits ({e['model']}, {e['edits']} per set x seeds {e['seeds']}, {e['num_inference_steps']} steps, "
            f"guidance {e['guidance_scale']}, image guidance {e['image_guidance_scale']}; centroid within 2 px of "
            "the exactly rendered edit in every frame)"
            + ("" if base is None else f"; seen flicker frame by frame without cross-frame attention {base:.2f}")
            + ":\n\n"
            + edits_markdown(report["edits"]["summary"])
        )
    if "tuning" in report:
        text += "\n" + report["tuning_md"]
    for kind, r in report.get("controls", {}).items():
        c = r["settings"]
        text += (
            f"\nControl {kind} ({c['controlnet']} on {c['model']}, {c['cases']} cases x seeds {c['seeds']}, "
            f"{c['num_inference_steps']} steps, guidance {c['guidance_scale']}):\n\n"
            + controls_markdown(kind, r["summary"], r.get("frame_by_frame"))
        )
    return text


def _markdown(report: dict) -> str:
    s = report["settings"]
    text = f"# t2v eval\n\n{report['seconds']} s in all\n\n"
    if s.get("steps") is not None:  # a video model was evaluated
        text += (
            f"model: {s['model']}; {s['prompts']} prompts per set x seeds {s['seeds']}; "
            f"{s['steps']} steps, guidance {s['guidance']}; "
            f"scenes past the model's clip: {s.get('scene_motion', 'windows')}\n\n"
        )
    if report["summary"]:
        text += markdown_table(report["summary"])
    two = {k: v["two_objects"] for k, v in report["summary"].items() if v.get("two_objects", {}).get("videos")}
    if two:
        text += (
            "\nTwo-object prompts, all-correct: "
            + "; ".join(f"{k} {100 * v['all_correct']:.0f}% of {v['videos']}" for k, v in two.items())
            + (" (regional prompting)" if s.get("regions") else "")
            + "\n"
        )
    for key in ("storyboards", "storyboards_shared"):
        if key in report:
            b = report[key]["summary"]
            text += (
                f"\nStoryboards ({b.get('backgrounds', 'mixed')} backgrounds): "
                f"{b['scenes']} scenes of 4-scene storyboards "
                f"({b.get('scene_frames', 16)} frames a scene, transition_frames {b.get('transition_frames', 8)}, "
                f"mean {b.get('transition_frames_mean', float('nan')):.1f}), "
                f"all-correct per scene {100 * b['scene_all_correct']:.0f}%; "
                f"max jump ratio median {b['max_jump_ratio_median']:.2f}, "
                f"worst {b['max_jump_ratio_max']:.2f} (target <= 3; "
                f"{b.get('boards_within_target', '-')} of {len(report[key]['results'])} boards within); "
                f"inside scenes (transitions left out) median {b['max_jump_ratio_inside_scenes_median']:.2f}, "
                f"worst {b['max_jump_ratio_inside_scenes_max']:.2f}; "
                "least possible for these cuts and transition length: "
                f"median {b.get('bound_jump_ratio_median', float('nan')):.2f}, "
                f"worst {b.get('bound_jump_ratio_max', float('nan')):.2f}\n"
            )
    if "long" in report:
        g = report["long"]["summary"]
        text += (
            f"\nLong single-prompt videos: {g['videos']} x {g['num_frames']} frames; max jump ratio median "
            f"{g['max_jump_ratio_median']:.2f}, worst {g['max_jump_ratio_max']:.2f} (target <= 3); "
            f"colour and shape kept {100 * g['objects_kept']:.0f}%; "
            f"all-correct over the whole video {100 * g.get('all_correct', float('nan')):.0f}%\n"
        )
    if "images" in report:
        i = report["images"]["settings"]
        text += (
            f"\nText-to-image model {i['model']}: {i['prompts']} prompts per set x seeds {i['seeds']}, "
            f"{i['steps']} steps, guidance {i['guidance']}; all_correct = colour, shape, size, count and "
            "background\n\n" + images_markdown(report["images"]["summary"])
        )
    if "zero_shot" in report:
        z = report["zero_shot"]["settings"]
        text += f"\nZero-shot ({z['model']}, {z['frames']} frames, {z['steps']} steps, t0 {z['t0']}, t1 {z['t1']}, "
        text += f"warp {z['warp']}, guidance {z['guidance']}):" + zero_shot_markdown(report["zero_shot"]["summary"])
    text += video_markdown(report)
    text += (
        "\nAccuracy is judged by t2v.eval.analyse from the frames; `all_correct` = colour, shape, size, motion and "
        "object count all right (background reported apart). "
        "Flicker: mean absolute change of background pixels between frames (0-255).\n"
    )
    return text


# ---------------------------------------------------------------- long videos and storyboards
STORYBOARD_BACKGROUNDS = ("mixed", "shared")


def storyboard_scenes(
    n: int = 8, scenes_per_board: int = 4, seed: int = 4321, backgrounds: str = "mixed"
) -> list[list[SceneSpec]]:
    """`n` storyboards of single-object seen compositions (deterministic). backgrounds "mixed": each
    scene draws its own background; "shared": every scene of a board has its first scene's (as in a
    story told in one place)."""
    if backgrounds not in STORYBOARD_BACKGROUNDS:
        raise ValueError(f"backgrounds must be one of {STORYBOARD_BACKGROUNDS}, got {backgrounds!r}")
    if backgrounds == "mixed":
        rng = np.random.default_rng([seed, 11])
        return [
            [sample_scene(rng, split="train", p_two_objects=0.0) for _ in range(scenes_per_board)] for _ in range(n)
        ]
    rng = np.random.default_rng([seed, 12])
    boards = []
    for _ in range(n):
        board = [sample_scene(rng, split="train", p_two_objects=0.0)]
        while len(board) < scenes_per_board:  # rejection: about one in three scenes has the board's background
            scene = sample_scene(rng, split="train", p_two_objects=0.0)
            if scene.background == board[0].background:
                board.append(scene)
        boards.append(board)
    return boards


def dissolve_bound(change_ends: list[tuple[np.ndarray, np.ndarray, int]]) -> float:
    """The smallest largest frame change any transition could have: for frames a and b that are
    `steps` frame changes apart, mean|b - a| / steps (the mean absolute difference is a norm, so
    the changes along the way add up to at least mean|b - a|). Max over the given cuts."""
    return max(
        (float(np.abs(b.astype(np.float32) - a.astype(np.float32)).mean()) / steps for a, b, steps in change_ends),
        default=0.0,
    )


def evaluate_storyboards(
    pipe,
    n: int = 8,
    scene_frames: int = 16,
    transition_frames: int | str | None = None,
    seed: int = 0,
    progress: bool = True,
    backgrounds: str = "mixed",
    **gen_kwargs,
) -> dict:
    """Judge each scene of `n` 4-scene storyboards on its own frames (the blended frames at the cuts
    left out), and measure jumps: max_jump_ratio of the whole video (largest frame change / median),
    and the same ratio over the frame pairs inside scenes (both frames outside the transitions): a
    cut between different backgrounds is a large change by design, a jump inside a scene is not.
    bound_jump_ratio: `dissolve_bound` over the video's median change: no transition of that length
    between the last unblended frame before each cut and the first after it could have a smaller
    largest change. transition_frames="auto": each cut's length as the pipeline chose it; None: the
    model's default."""
    long = LongVideoPipeline(**pipe.components)
    long.set_progress_bar_config(disable=True)
    transition_frames = pipe.defaults.transition_frames if transition_frames is None else transition_frames
    rows = []
    for k, board in enumerate(
        tqdm(
            storyboard_scenes(n, backgrounds=backgrounds),
            desc=f"storyboards ({backgrounds} backgrounds)",
            disable=not progress,
        )
    ):
        scenes = [Scene(canonical_caption(s), scene_frames) for s in board]
        out = long(scenes=scenes, transition_frames=transition_frames, seed=seed + k, **gen_kwargs)
        video = to_uint8(out.frames[0])
        halves = [0] + [t // 2 for t in out.transition_frames] + [0]  # blended frames on each side of each cut
        verdicts = []
        for i, spec in enumerate(board):
            lo, hi = i * scene_frames + halves[i], (i + 1) * scene_frames - halves[i + 1]
            verdicts.append({"prompt": scenes[i].prompt, **judge(spec, video[lo:hi])})
        change = frame_changes(video)
        cuts = [(i * scene_frames, halves[i]) for i in range(1, len(board))]
        inside = [f for f in range(len(change)) if not any(c - h - 1 <= f < c + h for c, h in cuts)]
        median = np.median(change) + JUMP_EPS  # max_jump_ratio, over all frame pairs and over those inside scenes
        ends = [
            (video[c - h - 1], video[c + h], 2 * h + 1) for c, h in cuts
        ]  # unblended frames either side of each cut
        rows.append(
            {
                "board": k,
                "scenes": verdicts,
                "transition_frames": out.transition_frames,
                "max_jump_ratio": float(change.max() / median),
                "max_jump_ratio_inside_scenes": float(change[inside].max() / median),
                "bound_jump_ratio": dissolve_bound(ends) / float(median),
            }
        )
    flat = [v for r in rows for v in r["scenes"]]
    stat = lambda key, f: float(f([r[key] for r in rows]))  # noqa: E731
    return {
        "results": rows,
        "summary": {
            "backgrounds": backgrounds,
            "scenes": len(flat),
            "scene_all_correct": float(np.mean([v["all_correct"] for v in flat])),
            "max_jump_ratio_median": stat("max_jump_ratio", np.median),
            "max_jump_ratio_max": stat("max_jump_ratio", np.max),
            "max_jump_ratio_inside_scenes_median": stat("max_jump_ratio_inside_scenes", np.median),
            "max_jump_ratio_inside_scenes_max": stat("max_jump_ratio_inside_scenes", np.max),
            "bound_jump_ratio_median": stat("bound_jump_ratio", np.median),
            "bound_jump_ratio_max": stat("bound_jump_ratio", np.max),
            "boards_within_target": int(sum(r["max_jump_ratio"] <= 3 for r in rows)),
            "scene_frames": scene_frames,
            "transition_frames": transition_frames,
            "transition_frames_mean": float(np.mean([t for r in rows for t in r["transition_frames"]])),
        },
    }


def evaluate_long(
    pipe,
    prompts: list[EvalPrompt],
    num_frames: int = 64,
    seed: int = 0,
    progress: bool = True,
    regions: bool = False,
    **gen_kwargs,
) -> dict:
    """Single-prompt long videos: max_jump_ratio, whether colour and shape hold over the whole
    video, and the analyser's verdict on the whole video (all_correct: the motion judged from its
    first and last frames, as for a 16-frame clip). regions=True: two-object prompts with regional
    prompting where the video is one pass (scene_motion "keyframes", `t2v.request.regions_fit`)."""
    long = LongVideoPipeline(**pipe.components)
    long.set_progress_bar_config(disable=True)
    one_pass = regions and regions_fit(pipe.defaults, num_frames, gen_kwargs.get("scene_motion"))
    size = (gen_kwargs.get("height") or pipe.default_size, gen_kwargs.get("width") or pipe.default_size)
    rows = []
    for k, p in enumerate(tqdm(prompts, desc="long videos", disable=not progress)):
        layout = shapes_regions(p.prompt, num_frames, *size) if one_pass else None
        video = to_uint8(long(p.prompt, num_frames=num_frames, seed=seed + k, regions=layout, **gen_kwargs).frames[0])
        found = {(o.color, o.shape) for o in analyse_video(video).objects}
        want = {(o.color, o.shape) for o in p.scene.objects}
        rows.append(
            {
                "prompt": p.prompt,
                "max_jump_ratio": max_jump_ratio(video),
                "objects_kept": want <= found,
                "all_correct": judge(p.scene, video)["all_correct"],
                "regions": layout is not None,
            }
        )
    return {
        "results": rows,
        "summary": {
            "videos": len(rows),
            "num_frames": num_frames,
            "max_jump_ratio_median": float(np.median([r["max_jump_ratio"] for r in rows])),
            "max_jump_ratio_max": float(np.max([r["max_jump_ratio"] for r in rows])),
            "objects_kept": float(np.mean([r["objects_kept"] for r in rows])),
            "all_correct": float(np.mean([r["all_correct"] for r in rows])),
        },
    }

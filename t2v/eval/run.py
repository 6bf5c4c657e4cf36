"""Prompt-adherence evaluation: generate, then judge the frames by image analysis (never by the model).

    t2v eval -o eval/ --prompts 48 --seeds 2

Three prompt sets, each from Shapes-world scenes whose ground truth is known:
  seen      compositions the training data contains, in the grammar's canonical phrasing;
  held_out  compositions never produced for training (purple triangles, orange objects moving up,
            shrinking circles), canonical phrasing;
  novel     seen compositions in phrasings the caption grammar never uses.
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

from t2v.eval.analyse import flicker, judge
from t2v.pipelines.text_to_video import to_uint8
from t2v.world import SceneSpec, canonical_caption, novel_caption, sample_scene, scene_to_dict

SPLITS = ("seen", "held_out", "novel")
ATTRIBUTES = ("color", "shape", "size", "motion", "count", "background", "all_correct")


@dataclass(frozen=True)
class EvalPrompt:
    split: str
    prompt: str
    scene: SceneSpec


def eval_prompts(n: int = 48, seed: int = 1234, p_two_objects: float = 0.25) -> list[EvalPrompt]:
    """`n` prompts per split, deterministic from `seed` (independent of the training data's seeds)."""
    rng = np.random.default_rng([seed, 7])
    prompts = []
    for _ in range(n):
        prompts.append(EvalPrompt("seen", *_canon(sample_scene(rng, split="train", p_two_objects=p_two_objects))))
    for _ in range(n):
        prompts.append(EvalPrompt("held_out", *_canon(sample_scene(rng, split="held_out"))))
    for _ in range(n):
        scene = sample_scene(rng, split="train", p_two_objects=p_two_objects)
        prompts.append(EvalPrompt("novel", novel_caption(scene, rng), scene))
    return prompts


def _canon(scene: SceneSpec) -> tuple[str, SceneSpec]:
    return canonical_caption(scene), scene


def evaluate(pipe, prompts: list[EvalPrompt], seeds=(0, 1), batch_size: int = 4, progress: bool = True, **gen_kwargs) -> dict:
    """Generate every prompt with every seed and judge it; returns {"results": [...], "summary": {...}}."""
    jobs = [(p, s) for p in prompts for s in seeds]
    results = []
    start = time.time()
    for i in tqdm(range(0, len(jobs), batch_size), desc="eval", disable=not progress):
        batch = jobs[i : i + batch_size]
        generators = [torch.Generator().manual_seed(s) for _, s in batch]
        frames = pipe([p.prompt for p, _ in batch], generator=generators, **gen_kwargs).frames
        for (p, s), video in zip(batch, frames):
            video = to_uint8(video)
            verdict = judge(p.scene, video)
            results.append({"split": p.split, "prompt": p.prompt, "seed": s, "scene": scene_to_dict(p.scene),
                            **verdict, "flicker": flicker(video, p.scene.background)})
    return {"results": results, "summary": summarise(results), "seconds": round(time.time() - start, 1)}


def summarise(results: list[dict]) -> dict:
    summary = {}
    for split in SPLITS:
        rows = [r for r in results if r["split"] == split]
        if rows:
            summary[split] = {a: float(np.mean([r[a] for r in rows])) for a in ATTRIBUTES}
            summary[split]["flicker"] = float(np.mean([r["flicker"] for r in rows]))
            summary[split]["videos"] = len(rows)
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


def _markdown(report: dict) -> str:
    s = report["settings"]
    text = f"# t2v eval\n\nmodel: {s['model']}; {s['prompts']} prompts per set x seeds {s['seeds']}; " \
           f"{s['steps']} steps, guidance {s['guidance']}; {report['seconds']} s\n\n"
    text += markdown_table(report["summary"])
    text += "\nAccuracy is judged by t2v.eval.analyse from the frames; `all_correct` = colour, shape, size, motion and " \
            "object count all right (background reported apart). Flicker: mean absolute change of background pixels between frames (0-255).\n"
    return text

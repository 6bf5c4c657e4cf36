"""One-shot video tuning evaluation: Shapes-world clips tuned on, edited from their inversion, judged from frames.

    python benchmarks/eval_tune.py --out eval-tune/

Each pair is a clip of one object moving left, right, up or down, rendered from the Shapes world with a
world seed of its own (clips no model was trained on) and described by its canonical caption ("a small red
circle moving right on a black background"), and an edit of its colour, shape or background (cycled) that
keeps the motion, described the same way ("a small blue circle moving right on a black background"). The
picture model is tuned on the clip with each seed (t2v.tuning.tune_clip: the path of `t2v tune`), the clip
is inverted, and two videos are sampled from the inversion as `t2v generate` does: the edit and the
reconstruction (the source caption). Judged from the frames (t2v.eval.analyse):

  attributes    the edited object's colour and shape, and the background, are the edited scene's;
  source gone   a colour edit: the source colour is not detected any more (a copy of the source fails);
  motion        the edited object's centroid track against the exactly rendered edit's (the source's
                trajectory): correlation along the motion axis >= 0.9 and mean distance <= 3 px, the object
                seen in >= 90% of the frames. A triangle's centroid sits lower in its box than a circle's or
                a square's: a shape edit's distance is the smaller of those to the edit's and the source's;
  edit right    attributes, source gone and motion together;
  psnr          the reconstruction against the source clip, dB (target >= 25).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from t2v.eval.analyse import analyse_video
from t2v.eval.zero_shot import track
from t2v.training.tune import TUNE_LR, TUNE_STEPS
from t2v.tuning import GUIDANCE, sample, tune_clip, video_unet
from t2v.world import SceneSpec, sample_scene, scene_is_held_out, scene_to_dict
from t2v.world.captions import canonical_caption
from t2v.world.edits import EDIT_VALUES, Edit, apply_edit, as_video, render_edit_pair
from t2v.zero_shot import get_image_pipeline


EVAL_WORLD_SEED = 4242  # the evaluation's clips
VALIDATION_WORLD_SEED = 777  # other clips, for choosing settings
MOVES = ("left", "right", "up", "down")
KINDS = ("color", "shape", "background")
CORRELATION_TARGET = 0.9
ERROR_TARGET = 3.0  # px, mean centroid distance
PRESENT_TARGET = 0.9  # fraction of frames in which the edited object is found
PSNR_TARGET = 25.0  # dB
MAX_PSNR = 99.0  # identical frames (instead of infinity, which JSON lacks)


@dataclass(frozen=True)
class TunePair:
    """A source clip and its edit: both scenes, their captions, and both clips rendered exactly (uint8)."""

    scene: SceneSpec
    edit: Edit
    edited: SceneSpec
    caption: str
    prompt: str
    source: np.ndarray
    target: np.ndarray


def tune_pairs(n: int = 12, world_seed: int = EVAL_WORLD_SEED, frames: int = 16, size: int = 64) -> list[TunePair]:
    """`n` pairs, deterministic from `world_seed`: one moving object, edit kinds cycled colour, shape, background."""
    pairs = []
    for i in range(n):
        rng, kind = np.random.default_rng([world_seed, i, 31]), KINDS[i % len(KINDS)]
        while True:  # rejection: a mover, and an edit that makes a valid, not held-out scene
            scene = sample_scene(rng, split="train", p_two_objects=0.0)
            if scene.objects[0].motion not in MOVES:
                continue
            old = scene.background if kind == "background" else getattr(scene.objects[0], kind)
            edit = Edit(
                kind, str(rng.choice([v for v in EDIT_VALUES[kind] if v != old])), None if kind == "background" else 0
            )
            try:
                edited = apply_edit(scene, edit)
            except ValueError:
                continue
            if not scene_is_held_out(edited):
                break
        source, target = render_edit_pair(scene, edit, frames, size, size, rng)
        pairs.append(
            TunePair(scene, edit, edited, canonical_caption(scene), canonical_caption(edited), source, target)
        )
    return pairs


def track_agreement(reference: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """(correlation along the reference's motion axis, mean distance in px, fraction of frames with both)
    of two centroid tracks [F, 2] (NaN where the object is absent); NaN where they cannot be compared."""
    both = np.isfinite(reference).all(1) & np.isfinite(got).all(1)
    present = float(both.mean())
    if both.sum() < 3:
        return float("nan"), float("nan"), present
    ref, out = reference[both], got[both]
    axis = int(np.argmax(ref.std(0)))
    a, b = ref[:, axis] - ref[:, axis].mean(), out[:, axis] - out[:, axis].mean()
    denominator = float(np.sqrt((a**2).sum() * (b**2).sum()))
    correlation = float((a * b).sum() / denominator) if denominator > 1e-9 else float("nan")
    return correlation, float(np.linalg.norm(ref - out, axis=1).mean()), present


def judge_edit(pair: TunePair, frames: np.ndarray) -> dict:
    """The verdict on an edited clip (uint8 [F, H, W, 3]) of `pair` (see the module's docstring)."""
    analysis = analyse_video(frames)
    found = {o.color: o for o in analysis.objects}
    want, old = pair.edited.objects[0], pair.scene.objects[0]
    obj = found.get(want.color)
    verdict = {
        "color": obj is not None,
        "shape": obj is not None and obj.shape == want.shape,
        "background": analysis.background == pair.edited.background,
        "count": len(analysis.objects) == 1,
        "source_gone": None if old.color == want.color else old.color not in found,
    }
    got = track(frames, want.color)[0]
    correlation, error, present = track_agreement(track(pair.target, want.color)[0], got)
    if want.shape != old.shape:  # the new shape may sit at the old one's centroid or at its box's centre
        error = min(error, track_agreement(track(pair.source, old.color)[0], got)[1])
    verdict.update(correlation=correlation, mean_error=error, present=present)
    verdict["motion"] = bool(
        present >= PRESENT_TARGET and correlation >= CORRELATION_TARGET and error <= ERROR_TARGET
    )  # (NaN compares False)
    verdict["attributes"] = bool(
        verdict["color"] and verdict["shape"] and verdict["background"] and verdict["source_gone"] is not False
    )
    verdict["all_correct"] = verdict["attributes"] and verdict["motion"]
    return verdict


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 clips, dB (MAX_PSNR when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * np.log10(255.0**2 / mse))


def evaluate_tuning(
    pairs: int = 12,
    seeds=(0, 1),
    steps: int | None = None,
    lr: float | None = None,
    *,
    checkpoints=(),
    guidances=None,
    model: str | None = None,
    world_seed: int = EVAL_WORLD_SEED,
    frames: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[dict, str]:
    """Tune on every pair with every seed, sample each edit and reconstruction from the inversion, judge them.

    steps, lr: the tuning's (default: t2v.training.tune's TUNE_STEPS, TUNE_LR). checkpoints: smaller step
    counts also judged on the way (one run continued, as a resumed tune: the same weights as a run of that
    length). guidances: the edits' guidance scales (default: the tuned model's, t2v.tuning.GUIDANCE); each
    is a setting of its own, at no extra tuning. Returns ({"settings", "summary" (the main setting: steps and
    the first guidance), "by_setting", "results", "seconds"}, a markdown table).
    """
    steps, lr = steps or TUNE_STEPS, lr or TUNE_LR
    guidances = tuple(guidances or (GUIDANCE,))
    counts = sorted({int(c) for c in checkpoints if 0 < c < steps} | {steps})
    image = get_image_pipeline(model, device, "float32")
    image.set_progress_bar_config(disable=True)
    size = image.unet.config.sample_size * image.vae_scale_factor
    jobs = [(p, s) for p in tune_pairs(pairs, world_seed, frames, size) for s in seeds]
    results, start = [], time.time()
    for pair, seed in tqdm(jobs, desc="eval tune", disable=not progress):
        results += _tune_and_judge(image, pair, seed, counts, lr, guidances, device)
    settings = {"model": model or "t2v-shapes-image (embedded)", "pairs": pairs, "seeds": list(seeds), "steps": steps}
    settings.update(lr=lr, checkpoints=counts, guidances=list(guidances), world_seed=world_seed, frames=frames)
    by_setting = {
        _key(c, g): summarise_tuning([r for r in results if r["steps"] == c and r["guidance"] == g])
        for c in counts
        for g in guidances
    }
    report = {"settings": settings, "summary": by_setting[_key(steps, guidances[0])], "by_setting": by_setting}
    report.update(results=results, seconds=round(time.time() - start, 1))
    return report, tuning_markdown(report)


def _key(steps: int, guidance: float) -> str:
    return f"steps={steps} guidance={guidance:g}"


def _tune_and_judge(image, pair: TunePair, seed: int, counts: list[int], lr: float, guidances, device) -> list[dict]:
    """One tune of `pair` continued through `counts` steps; at each, the inversion and every guidance judged."""
    video = as_video(pair.source)
    unet = video_unet(image.unet, seed)
    rows, tuning = [], 0.0
    with tempfile.TemporaryDirectory() as work:
        for count in counts:
            t = time.time()
            args = {"steps": count, "lr": lr, "seed": seed, "output_dir": work, "checkpoint_every": max(counts)}
            pipe, latents = tune_clip(image, video, pair.caption, unet=unet, progress=False, device=device, **args)
            tuning += time.time() - t  # tuning (continued) and inversion
            for g in guidances:
                edited = sample(pipe, latents, pair.prompt, guidance_scale=g)
                rebuilt = sample(pipe, latents, pair.caption, guidance_scale=g)
                rows.append({
                    "kind": pair.edit.kind, "caption": pair.caption, "prompt": pair.prompt, "seed": seed,
                    "steps": count, "lr": lr, "guidance": g, "scene": scene_to_dict(pair.scene),
                    "edited": scene_to_dict(pair.edited), "tune_seconds": round(tuning, 1),
                    "psnr": psnr(rebuilt, pair.source), **judge_edit(pair, edited),
                })  # fmt: skip
    return rows


def summarise_tuning(results: list[dict]) -> dict:
    if not results:
        return {}
    mean = lambda key: float(np.mean([r[key] for r in results]))  # noqa: E731
    median = lambda key: float(np.nanmedian([r[key] for r in results]))  # noqa: E731
    colour = [r["source_gone"] for r in results if r["source_gone"] is not None]
    return {
        "edits": len(results),
        "edit_right": mean("all_correct"),
        "attributes": mean("attributes"),
        "source_colour_gone": float(np.mean(colour)) if colour else None,
        "motion": mean("motion"),
        "correlation_median": median("correlation"),
        "mean_error_median": median("mean_error"),
        "psnr_mean": mean("psnr"),
        "psnr_median": median("psnr"),
        "psnr_25": float(np.mean([r["psnr"] >= PSNR_TARGET for r in results])),
        "tune_seconds_mean": mean("tune_seconds"),
        "by_kind": {
            k: float(np.mean([r["all_correct"] for r in results if r["kind"] == k]))
            for k in KINDS
            if any(r["kind"] == k for r in results)
        },  # fmt: skip
    }


def tuning_markdown(report: dict) -> str:
    s = report["settings"]
    text = (
        f"One-shot tuning: {s['pairs']} pairs x {len(s['seeds'])} seeds, lr {s['lr']:g}, {s['frames']} frames, "
        f"{s['model']}, world seed {s['world_seed']}\n\n"
        "| steps | guidance | edit right | attributes | source colour gone | motion | correlation (median) | "
        "error px (median) | PSNR dB (mean) | PSNR >= 25 | tune s (mean) | by kind (colour/shape/background) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    for key, m in report["by_setting"].items():
        steps, guidance = (part.split("=")[1] for part in key.split())
        kinds = "/".join(pct(m["by_kind"].get(k)) for k in KINDS)
        text += (
            f"| {steps} | {guidance} | {pct(m['edit_right'])} | {pct(m['attributes'])} | "
            f"{pct(m['source_colour_gone'])} | {pct(m['motion'])} | {m['correlation_median']:.3f} | "
            f"{m['mean_error_median']:.2f} | {m['psnr_mean']:.1f} | {pct(m['psnr_25'])} | "
            f"{m['tune_seconds_mean']:.0f} | {kinds} |\n"
        )
    return text

"""Choose the zero-shot defaults of a text-to-image model on a validation set (not the eval's prompts).

    python benchmarks/probe_zero_shot_settings.py --prompts 20 --seeds 1
    python benchmarks/probe_zero_shot_settings.py --model DIR --t0 40,44 --t1 47 --warp latent,pixel

For each (warp, t0, t1, steps, guidance) it makes zero-shot videos of validation prompts (`t2v.eval.zero_shot`
with prompt seed 99, where `t2v eval` uses 1234) and prints what `t2v eval --zero-shot` reports:
attributes, colour and shape kept, direction, speed within 25%, jump ratio. t0 and t1 are fractions
of the steps here (0.88, 0.94: the original's 44 and 47 of 50), so one grid serves any step count.
"""

from __future__ import annotations

import argparse
import itertools
import time


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--prompts", type=int, default=20)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", default="50")
    p.add_argument("--t0", default="0.88", help="fractions of the steps, comma-separated")
    p.add_argument("--t1", default="0.94")
    p.add_argument("--warp", default="latent,pixel")
    p.add_argument("--guidance", default="7.5")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch

    from t2v.eval.zero_shot import evaluate_zero_shot, zero_shot_prompts
    from t2v.pipelines.schedulers import make_scheduler
    from t2v.pipelines.text_to_image import TextToImagePipeline
    from t2v.pipelines.text_to_video_zero import TextToVideoZeroPipeline

    torch.set_num_threads(args.threads)
    image = TextToImagePipeline.from_pretrained(args.model)
    pipe = TextToVideoZeroPipeline(**image.components)
    pipe.scheduler = make_scheduler("ddim", image.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    prompts = zero_shot_prompts(args.prompts, seed=99)
    grid = itertools.product(
        args.warp.split(","), floats(args.t0), floats(args.t1), map(int, args.steps.split(",")), floats(args.guidance)
    )
    print("| warp | t0 | t1 | steps | guidance | attributes | kept | direction | speed | jumps <= 3 | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for warp, f0, f1, steps, guidance in grid:
        t0, t1 = round(f0 * steps), round(f1 * steps)
        if not 0 <= t0 < t1 < steps:
            continue
        start = time.time()
        kw = {
            "video_length": args.frames,
            "num_inference_steps": steps,
            "t0": t0,
            "t1": t1,
            "warp": warp,
            "guidance_scale": guidance,
        }
        s = evaluate_zero_shot(pipe, prompts, tuple(range(args.seeds)), progress=False, **kw)["summary"]
        print(
            f"| {warp} | {t0} | {t1} | {steps} | {guidance:g} | {100 * s['attributes_all_correct']:.0f}% | "
            f"{100 * s['kept_frames']:.0f}% | {100 * s['direction']:.0f}% | {100 * s['speed_within_25']:.0f}% | "
            f"{100 * s['jump_ratio_within_3']:.0f}% | {time.time() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

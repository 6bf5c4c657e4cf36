"""Generation speed: t2v's TextToVideoPipeline against diffusers' TextToVideoSDPipeline, same weights.

    python benchmarks/bench_generate.py                      # the embedded model, 16 frames 64x64, 25 steps
    python benchmarks/bench_generate.py --model DIR --runs 7 --frames 16 --size 256
    python benchmarks/bench_generate.py --regions            # also: a two-object prompt with and without regions

Both pipelines share the same UNet, VAE and text encoder objects (so the UNet's attention
processors, e.g. the embedded model's frame positions, are the same in both) and run DPM-Solver++ (the blog
recipe) with the same steps and seed; runs alternate in one process (ours, theirs, ours, ...), so
both see the same machine state. Prints the median seconds of each, their ratio (target <= 1.05),
and, each measured in a fresh subprocess: model load time and the peak RSS of one generation with t2v.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


PROMPT = "a red circle moving right on a black background"


def child(args) -> None:
    """Fresh process: time the load, generate once, report peak RSS (MB)."""
    import torch

    from t2v.pipelines.text_to_video import load_pipeline

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pipe = load_pipeline(args.model, device="cpu")
    load_s = time.perf_counter() - start
    pipe.set_progress_bar_config(disable=True)
    size = args.size or pipe.default_size
    start = time.perf_counter()
    pipe(PROMPT, num_frames=args.frames, height=size, width=size, num_inference_steps=args.steps, seed=0)
    gen_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": load_s, "first_generate_s": gen_s, "peak_rss_mb": peak_mb}))


def alternate(fns: dict, runs: int) -> dict[str, list[float]]:
    """Seconds of each function over `runs` rounds, the functions taking turns within each round."""
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model directory or Hub id (default: the embedded model)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=None, help="height and width (default: the model's)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--regions",
        action="store_true",
        help="also time regional prompting (t2v.pipelines.regions) on a two-object prompt",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import torch
    from diffusers import TextToVideoSDPipeline

    from t2v.pipelines.schedulers import make_scheduler
    from t2v.pipelines.text_to_video import load_pipeline

    torch.set_num_threads(args.threads)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--frames",
        str(args.frames),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    cmd += (["--model", args.model] if args.model else []) + (["--size", str(args.size)] if args.size else [])
    fresh = [
        json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        for _ in range(3)
    ]

    ours = load_pipeline(args.model, device="cpu")
    ours.set_scheduler("dpm++")
    theirs = TextToVideoSDPipeline(**{**ours.components, "scheduler": make_scheduler("dpm++", ours.scheduler.config)})
    for pipe in (ours, theirs):
        pipe.set_progress_bar_config(disable=True)
    size = args.size or ours.default_size
    common = {
        "num_frames": args.frames,
        "height": size,
        "width": size,
        "num_inference_steps": args.steps,
        "guidance_scale": ours.defaults.guidance_scale,
    }
    run_ours = lambda: ours(PROMPT, **common, seed=0)  # noqa: E731
    run_theirs = lambda: theirs(PROMPT, **common, generator=torch.Generator().manual_seed(0))  # noqa: E731
    run_ours(), run_theirs()  # warm-up
    times = alternate({"t2v": run_ours, "diffusers": run_theirs}, args.runs)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"model: {args.model or 'embedded t2v-shapes'}; {args.frames} frames {size}x{size}, "
        f"{args.steps} steps DPM-Solver++, "
        f"guidance {ours.defaults.guidance_scale:g}, {args.threads} threads, {args.runs} alternating runs"
    )
    print(f"t2v        median {med['t2v']:.3f} s   runs {' '.join(f'{t:.3f}' for t in times['t2v'])}")
    print(f"diffusers  median {med['diffusers']:.3f} s   runs {' '.join(f'{t:.3f}' for t in times['diffusers'])}")
    print(f"ratio t2v/diffusers: {med['t2v'] / med['diffusers']:.3f} (target <= 1.05)")
    print(f"model load (fresh process, median of 3): {statistics.median(f['load_s'] for f in fresh):.2f} s")
    print(
        "peak RSS of load + one generation (fresh process, median of 3): "
        f"{statistics.median(f['peak_rss_mb'] for f in fresh):.0f} MB"
    )
    if args.regions:
        from t2v.world.layout import shapes_regions

        two = "a red square moving right and a blue circle growing on a black background"
        regions = shapes_regions(two, args.frames, size, size)
        rt = alternate(
            {
                "plain": lambda: ours(two, **common, seed=0),
                "regions": lambda: ours(two, **common, seed=0, regions=regions),
            },
            args.runs,
        )
        rmed = {k: statistics.median(v) for k, v in rt.items()}
        print(
            f"two-object prompt: plain median {rmed['plain']:.3f} s, with regions {rmed['regions']:.3f} s "
            f"(ratio {rmed['regions'] / rmed['plain']:.3f})"
        )
    print(
        f"peak RSS of this process (both pipelines, {2 * args.runs + 2} videos): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()

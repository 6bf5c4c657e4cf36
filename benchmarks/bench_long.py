"""Long videos: seconds per frame and peak memory from 32 to 256 frames (windows of the model's length).

    python benchmarks/bench_long.py                       # the embedded model, 32 64 128 256 frames
    python benchmarks/bench_long.py --frames 32 256 --runs 3
    python benchmarks/bench_long.py --scene-motion windows   # overlapping windows
                                                             # (the default for models without a say)

Each length runs in a fresh subprocess (so its peak RSS is its own), `--runs` times; prints the
median seconds per frame, its spread against the 32-frame figure (target within +-20%), the peak
RSS ratio against 32 frames (target <= 1.2) and the max jump ratio (largest change between
consecutive frames / median change; target <= 3). --scene-motion: how frames past the model's
length are made (default: the model's; the embedded model's is "keyframes": one window of
keyframes, interpolated, so time per frame falls with length; "windows": time linear in length).
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
    import torch

    from t2v.eval.analyse import max_jump_ratio
    from t2v.pipelines.long_video import LongVideoPipeline
    from t2v.pipelines.text_to_video import load_pipeline, to_uint8

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, device="cpu")
    long = LongVideoPipeline(**pipe.components)
    long.set_progress_bar_config(disable=True)
    long(PROMPT, num_frames=16, num_inference_steps=2, seed=0)  # warm-up, not timed (first-call costs)
    times, jumps = [], []
    for run in range(args.runs):
        start = time.perf_counter()
        frames = long(
            PROMPT,
            num_frames=args.child_frames,
            num_inference_steps=args.steps,
            seed=run,
            scene_motion=args.scene_motion,
        ).frames[0]
        times.append(time.perf_counter() - start)
        jumps.append(max_jump_ratio(to_uint8(frames)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": args.child_frames, "seconds": times, "peak_rss_mb": peak, "jump": jumps}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--frames", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scene-motion", choices=["keyframes", "windows"], default=None, help="default: the model's")
    p.add_argument("--child-frames", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_frames:
        return child(args)

    rows = []
    for n in args.frames:
        cmd = (
            [
                sys.executable,
                __file__,
                "--child-frames",
                str(n),
                "--runs",
                str(args.runs),
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ]
            + (["--model", args.model] if args.model else [])
            + (["--scene-motion", args.scene_motion] if args.scene_motion else [])
        )
        rows.append(
            json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        )
    base = rows[0]
    base_spf = statistics.median(base["seconds"]) / base["frames"]
    print(
        f"model: {args.model or 'embedded t2v-shapes'}; "
        f"scene motion: {args.scene_motion or 'the model default'}; {args.steps} steps, "
        f"{args.threads} threads, median of {args.runs} runs per length"
    )
    print("frames  s/video   s/frame  vs first  peak RSS MB  vs first  max jump ratio (worst)")
    for r in rows:
        spf = statistics.median(r["seconds"]) / r["frames"]
        print(
            f"{r['frames']:>6}  {statistics.median(r['seconds']):>7.2f}  {spf:>8.3f}  "
            f"{100 * (spf / base_spf - 1):>+7.1f}%  "
            f"{r['peak_rss_mb']:>11.0f}  {r['peak_rss_mb'] / base['peak_rss_mb']:>7.2f}x  {max(r['jump']):.2f}"
        )


if __name__ == "__main__":
    main()

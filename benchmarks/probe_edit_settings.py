"""Choose the edit model's defaults on the validation set (validation phrasings, cases the eval never uses).

    python benchmarks/probe_edit_settings.py --model runs/edit1/model --cases 16

Tries each (steps, guidance, image guidance, shared noise) of the grid on `--cases` validation cases x 1 seed,
and prints
the share of correct edits (asked attribute changed, everything else kept) and of centroids within 2 px,
best first. The eval (`t2v eval --edits N`) then reports the chosen settings on other cases.
"""

from __future__ import annotations

import argparse
import itertools
import json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--steps", default="10,20,30")
    p.add_argument("--guidance", default="3,5,7.5")
    p.add_argument("--image-guidance", default="1.0,1.5,2.0")
    p.add_argument("--shared-noise", default="0", help="0, 1 or 0,1: one start noise for all frames")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args()

    from t2v.eval.edits import edit_cases, evaluate_edits, pipeline_edit_fn
    from t2v.pipelines.video_instruct_pix2pix import VideoInstructPix2PixPipeline

    pipe = VideoInstructPix2PixPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    cases = edit_cases(args.cases, seed=99, sets=("validation",))
    grid = itertools.product(
        [int(x) for x in args.steps.split(",")],
        [float(x) for x in args.guidance.split(",")],
        [float(x) for x in args.image_guidance.split(",")],
        [bool(int(x)) for x in args.shared_noise.split(",")],
    )
    rows = []
    for steps, g, ig, shared in grid:
        kw = {"num_inference_steps": steps, "guidance_scale": g, "image_guidance_scale": ig, "shared_noise": shared}
        s = evaluate_edits(pipeline_edit_fn(pipe, **kw), cases, (0,), progress=False)["summary"]["validation"]
        rows.append({**kw, **{k: s[k] for k in ("correct", "changed", "kept", "centroid", "psnr", "flicker")}})
        print(json.dumps(rows[-1]), flush=True)
    rows.sort(key=lambda r: (-r["correct"], -r["centroid"], r["num_inference_steps"]))
    print("best:", json.dumps(rows[0]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

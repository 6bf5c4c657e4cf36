"""One-shot video tuning (Tune-A-Video) on the embedded model: edits of Shapes-world clips, judged from frames.

    python benchmarks/eval_tune.py --out eval-tune/                      # 12 pairs x 2 seeds, the defaults
    python benchmarks/eval_tune.py --out sweep/ --validation --pairs 4 --seeds 0 \\
        --steps 100 200 300 --lr 1e-4 3e-4 1e-3 --guidance 5 7.5 12.5  # choosing settings

Runs t2v.eval.tune.evaluate_tuning (see there for what is judged) once per learning rate; several --steps
are checkpoints of one run (the largest is its length), several --guidance values are sampled from the same
tuned model. --validation takes the clips from the validation world seed instead of the evaluation's.
Writes eval-tune.json (every result) and eval-tune.md (the tables) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for eval-tune.json and eval-tune.md")
    p.add_argument("--model", default=None, help="text-to-image model (default: the embedded t2v-shapes-image)")
    p.add_argument("--pairs", type=int, default=12)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="tuning seeds")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="tuning steps (default: tune()'s)")
    p.add_argument("--lr", type=float, nargs="+", default=None, help="learning rates (default: tune()'s)")
    p.add_argument("--guidance", type=float, nargs="+", default=None, help="edit guidance (default: the model's)")
    p.add_argument("--validation", action="store_true", help="the validation clips (another world seed)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()

    import torch

    from t2v.eval.tune import EVAL_WORLD_SEED, VALIDATION_WORLD_SEED, evaluate_tuning

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = sorted(args.steps) if args.steps else [None]
    runs, texts, start = [], [], time.time()
    for lr in args.lr or [None]:
        report, text = evaluate_tuning(
            args.pairs, tuple(args.seeds), steps[-1], lr, checkpoints=steps[:-1], guidances=args.guidance,
            model=args.model, world_seed=VALIDATION_WORLD_SEED if args.validation else EVAL_WORLD_SEED,
            frames=args.frames, device=args.device,
        )  # fmt: skip
        runs.append(report)
        texts.append(text)
        print(text, flush=True)
    machine = {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "seconds": round(time.time() - start)}
    (out / "eval-tune.json").write_text(json.dumps({"machine": machine, "runs": runs}, indent=1))
    (out / "eval-tune.md").write_text("\n".join(texts) + f"\n{machine}\n")
    print(f"wrote {out / 'eval-tune.json'} and {out / 'eval-tune.md'} ({machine['seconds']} s)")


if __name__ == "__main__":
    main()

"""How much a text-to-video UNet listens to each part of the prompt (a diagnostic, not a speed benchmark).

    python benchmarks/probe_prompt_sensitivity.py                 # the embedded model
    python benchmarks/probe_prompt_sensitivity.py --model DIR --seeds 4

1. Word swaps: the norm of the change of the UNet's output (one forward pass, same noise) when one
   word of the prompt changes: direction (left -> right / up), motion kind (moving -> standing
   still), colour, shape; and prompt -> empty prompt. Medians over --seeds noises, at several
   timesteps. A model that draws motion in the prompt's direction must change its output when the
   direction word changes about as much as when the colour word does.
2. Attention shares: the mean cross-attention weight each prompt token gets in the spatial
   transformers (all heads, positions and frames), and the share of the padding tokens.
"""

from __future__ import annotations

import argparse
import statistics

import torch


BASE = "a large red circle moving left on a black background"
SWAPS = {
    "direction left->right": BASE.replace("left", "right"),
    "direction left->up": BASE.replace("left", "up"),
    "motion moving->still": BASE.replace("moving left", "standing still"),
    "colour red->blue": BASE.replace("red", "blue"),
    "shape circle->square": BASE.replace("circle", "square"),
    "prompt -> empty": "",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--timesteps", default="999,800,500,200")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from t2v.pipelines.text_to_video import load_pipeline

    pipe = load_pipeline(args.model, device="cpu")
    unet, tok, te = pipe.unet, pipe.tokenizer, pipe.text_encoder
    cfg = unet.config

    @torch.no_grad()
    def embed(prompt: str):
        t = tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        return te(t.input_ids, attention_mask=t.attention_mask)[0], t

    size = pipe.default_size // pipe.vae_scale_factor
    noises = [
        torch.randn(1, cfg.in_channels, 16, size, size, generator=torch.Generator().manual_seed(s))
        for s in range(args.seeds)
    ]
    base = embed(BASE)[0]
    print(f"word swaps: median |UNet(swapped) - UNet(base)| over {args.seeds} noises (base: {BASE!r})")
    timesteps = [int(t) for t in args.timesteps.split(",")]
    print(f"{'swap':24s}" + "".join(f"{'t=' + str(t):>10s}" for t in timesteps))
    with torch.no_grad():
        ref = {(t, i): unet(n, t, encoder_hidden_states=base).sample for t in timesteps for i, n in enumerate(noises)}
        for name, prompt in SWAPS.items():
            e = embed(prompt)[0]
            row = [
                statistics.median(
                    (unet(n, t, encoder_hidden_states=e).sample - ref[t, i]).norm().item()
                    for i, n in enumerate(noises)
                )
                for t in timesteps
            ]
            print(f"{name:24s}" + "".join(f"{v:10.2f}" for v in row))
        norms = [statistics.median(ref[t, i].norm().item() for i in range(len(noises))) for t in timesteps]
        print(f"{'|UNet(base)|':24s}" + "".join(f"{v:10.2f}" for v in norms))

    # attention shares: the projections' outputs are captured by hooks, so whatever attention processor the
    # model uses (frame positions included) is what is measured
    captured: dict[str, dict[str, torch.Tensor]] = {}
    hooks = []
    for name, module in unet.named_modules():
        if name.endswith("attn2") and ".attentions." in name and "temp_attentions" not in name:
            captured[name] = {}
            for proj in ("to_q", "to_k"):
                hooks.append(
                    getattr(module, proj).register_forward_hook(
                        lambda m, i, o, store=captured[name], proj=proj: store.__setitem__(proj, o)
                    )
                )
    _, tokens = embed(BASE)
    words = tok.convert_ids_to_tokens(tokens.input_ids[0])
    real = int(tokens.attention_mask[0].sum())
    for t in (timesteps[0], timesteps[-1]):
        with torch.no_grad():
            unet(noises[0], t, encoder_hidden_states=base)
        shares = []
        for name, store in captured.items():
            attn = unet.get_submodule(name)
            q, k = attn.head_to_batch_dim(store["to_q"]), attn.head_to_batch_dim(store["to_k"])
            shares.append(attn.get_attention_scores(q, k, None).mean(dim=(0, 1)))
        share = torch.stack(shares).mean(0)
        print(
            f"\nmean cross-attention share per token at t={t} "
            f"({len(shares)} spatial cross-attentions; uniform = {1 / len(words):.3f}):"
        )
        print("  " + "  ".join(f"{w}:{s:.3f}" for w, s in zip(words[:real], share[:real].tolist())))
        print(f"  padding ({len(words) - real} tokens): {share[real:].sum():.3f}")
    for h in hooks:
        h.remove()


if __name__ == "__main__":
    main()

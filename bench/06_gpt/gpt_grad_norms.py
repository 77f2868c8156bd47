"""Lesson 06: how often does clipping at 1.0 act in nanoGPT's CPU recipe, and is the model still learning at 2,000 steps?

Records the gradient norm of every step (before clipping) and the 20-batch train/val losses of
`TrainConfig.nanogpt_cpu()`, seed 1337, one thread; writes `grad_norms.json` and the `grad_norms` section of RESULTS.md.

    python bench/06_gpt/gpt_grad_norms.py
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import numpy as np
import torch
from llmcourse.core import seed_everything
from llmcourse.gpt import GPT, GPTConfig, TrainConfig, train, shakespeare_char, token_batches


def main():
    torch.set_num_threads(1)
    norms, clip = [], torch.nn.utils.clip_grad_norm_
    def recording_clip(*args, **kw):  # `train` calls torch.nn.utils.clip_grad_norm_; keep what it returns
        norm = clip(*args, **kw); norms.append(float(norm)); return norm
    torch.nn.utils.clip_grad_norm_ = recording_clip
    tok, tr, va = shakespeare_char()
    seed_everything(1337)
    model = GPT(GPTConfig.baby(vocab_size=tok.vocab_size))
    h = train(model, token_batches(tr, va, 64), TrainConfig.nanogpt_cpu(), device="cpu", progress=False)
    n = np.array(norms)
    spans = [dict(steps=f"{a}-{b - 1}", above_1=float((n[a:b] > 1).mean()), median=float(np.median(n[a:b])))
             for a, b in [(0, 100), (100, 500), (500, 1000), (1000, 2000)]]
    steps, train_loss = h.series("train_loss"); _, val_loss = h.series("val_loss")
    harness.record(__file__, "grad_norms", dict(spans=spans, steps=steps, train_loss=train_loss, val_loss=val_loss))
    lines = ["## Gradient norms and losses of nanoGPT's settings", "",
             f"`{harness.command()}` at commit `{harness.commit()}`. Machine: {harness.machine_line()}.", "",
             "The gradient norm before clipping, at each step of `TrainConfig.nanogpt_cpu()` (seed 1337):", "",
             "| steps | norm above 1.0 (clipped) | median norm |", "|---|---|---|"]
    lines += [f"| {s['steps']} | {s['above_1']:.1%} | {s['median']:.2f} |" for s in spans]
    lines += ["", "The 20-batch losses at each evaluation:", "", "| step | " + " | ".join(str(s) for s in steps) + " |",
              "|---" * (len(steps) + 1) + "|", "| train | " + " | ".join(f"{x:.3f}" for x in train_loss) + " |",
              "| val | " + " | ".join(f"{x:.3f}" for x in val_loss) + " |"]
    harness.write_section(__file__, "grad_norms", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__": main()

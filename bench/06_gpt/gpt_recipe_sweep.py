"""Lesson 06: how much do the settings the issue leaves open move nanoGPT's CPU result on shakespeare_char?

The issue fixes the model (4 layers, 4 heads, width 128, context 64, dropout 0), batch 12, 2000 steps, lr 1e-3 -> 1e-4
and the 90/10 split. It leaves open the warm-up, the AdamW betas and weight decay, clipping and the seed. This script
trains `GPT(GPTConfig.baby())` with `llmcourse.gpt.train` for each variant and seed and reports two validation losses:
the 20-batch estimate that nanoGPT prints (and the issue's bar uses), and the loss on the whole validation split
(every non-overlapping window of 64), which does not depend on which batches were drawn.

    python bench/gpt_recipe_sweep.py --variants base,beta2=0.95 --seeds 1337,0,1 --threads 1 --out bench/gpt_sweep_a.json
"""
import argparse, json, platform, time
import torch
import torch.nn.functional as F

from llmcourse.core import seed_everything
from llmcourse.gpt import GPT, GPTConfig, TrainConfig, train, shakespeare_char, token_batches


@torch.no_grad()
def whole_split_loss(model:GPT, ids:torch.Tensor, block:int=64, batch:int=256) -> float:
    "Mean next-token loss over every non-overlapping window of `block` tokens in `ids`."
    model.eval()
    n = (len(ids) - 1) // block
    x_all = ids[:n * block].view(n, block)
    y_all = ids[1:n * block + 1].view(n, block)
    total = 0.0
    for i in range(0, n, batch):
        logits, _ = model(x_all[i:i + batch])
        total += F.cross_entropy(logits.flatten(0, 1), y_all[i:i + batch].flatten(), reduction="sum").item()
    return total / (n * block)


def parse_variant(v:str) -> dict:
    "'base' -> {}; 'beta2=0.95+weight_decay=0' -> {'beta2': 0.95, 'weight_decay': 0.0}."
    if v == "base": return {}
    return {k: float(x) if "." in x or "e" in x else int(x) for k, x in (kv.split("=") for kv in v.split("+"))}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="base")
    p.add_argument("--seeds", default="1337")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/gpt_sweep.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    tok, train_ids, val_ids = shakespeare_char()
    get_batch = token_batches(train_ids, val_ids, 64)
    rows = []
    for v in a.variants.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            kw = parse_variant(v)
            tc = TrainConfig.nanogpt_cpu(seed=seed, **kw)
            seed_everything(seed)
            model = GPT(GPTConfig.baby(vocab_size=tok.vocab_size))
            t0 = time.perf_counter()
            hist = train(model, get_batch, tc, device="cpu", resume=False, progress=False)
            secs = time.perf_counter() - t0
            row = dict(variant=v, seed=seed, val20=round(hist.last("val_loss"), 4),
                       val_whole=round(whole_split_loss(model, val_ids), 4), train_seconds=round(secs, 1))
            print(json.dumps(row), flush=True)
            rows.append(row)
    res = dict(rows=rows, threads=a.threads, torch=torch.__version__, machine=platform.machine())
    with open(a.out, "w") as f: json.dump(res, f, indent=1)


if __name__ == "__main__": main()

"""Lesson 06: how much do the settings nanoGPT's CPU recipe borrows from its large runs move its result on shakespeare_char?

The comparison with nanoGPT fixes the model (4 layers, 4 heads, width 128, context 64, dropout 0), batch 12, 2000 steps,
lr 1e-3 -> 1e-4 and the 90/10 split. The warm-up, the AdamW betas and weight decay, clipping and the seed are
settings a recipe may choose (on the validation loss: tiny Shakespeare has no test split). This script
trains `GPT(GPTConfig.baby())` with `llmcourse.gpt.train` for each variant and seed and reports two validation losses:
the 20-batch estimate that nanoGPT prints (and the issue's bar uses), and the loss on the whole validation split
(every non-overlapping window of 64), which does not depend on which batches were drawn.

    python bench/06_gpt/gpt_recipe_sweep.py --variants base,beta2=0.95 --seeds 1337,0,1 --threads 1 --out bench/06_gpt/gpt_sweep_a.json
    python bench/06_gpt/gpt_recipe_sweep.py --report  # the table of RESULTS.md from bench/06_gpt/gpt_recipe_sweep.json

`bench/06_gpt/gpt_recipe_sweep.json` holds the runs behind `TrainConfig.nanogpt_cpu_tuned` (made before the bench
harness recorded commits: its note says how they ran).
"""
import argparse, json, platform, statistics, sys, time
from collections import defaultdict
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
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


def report(path:Path):
    "Write the `recipe_sweep` section of RESULTS.md from the runs in `path`."
    res = json.loads(path.read_text())
    groups = defaultdict(list)
    for r in res["rows"]: groups[r["variant"]].append(r)
    name = lambda v: "none (`nanogpt_cpu`)" if v == "base" else ", ".join(
        {"grad_clip=0.0": "no clipping", "weight_decay=0.0": "no weight decay"}.get(kv, kv.replace("=", " ")) for kv in v.split("+"))
    rows = sorted(groups.items(), key=lambda kv: -statistics.mean(r["val_whole"] for r in kv[1]))
    lines = ["## The recipe's open settings, changed one at a time and together", "",
             f"`python bench/06_gpt/gpt_recipe_sweep.py --report`, from `{path.name}` ({res.get('note', '')}; torch "
             f"{res.get('torch')}, {res.get('threads')} thread). Each run: `llmcourse.gpt.train` with "
             "`TrainConfig.nanogpt_cpu(seed=..., **changes)` on `GPT(GPTConfig.baby())`, 2000 steps. \"Whole split\" is the "
             "loss on every non-overlapping 64-character window of the validation text, which no batch draw moves; "
             "\"20 batches\" is the estimate nanoGPT prints. Every choice here was made on this validation split.", "",
             "| changes from nanoGPT's settings | seeds | whole split: mean | whole split: range | 20 batches: mean |",
             "|---|---|---|---|---|"]
    for v, rs in rows:
        w = [r["val_whole"] for r in rs]
        lines.append(f"| {name(v)} | {', '.join(str(r['seed']) for r in rs)} | {statistics.mean(w):.4f} | "
                     f"{min(w):.4f}-{max(w):.4f} | {statistics.mean(r['val20'] for r in rs):.4f} |")
    harness.write_section(__file__, "recipe_sweep", "\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only write the RESULTS.md table from bench/06_gpt/gpt_recipe_sweep.json")
    p.add_argument("--variants", default="base")
    p.add_argument("--seeds", default="1337")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench/06_gpt/gpt_sweep.json")
    a = p.parse_args()
    if a.report: return report(Path(__file__).with_name("gpt_recipe_sweep.json"))
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

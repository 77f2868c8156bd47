"""Training throughput and val loss against wall time: `llmcourse.gpt.train` next to a plain nanoGPT-style loop.

Both train the same model (`GPT(GPTConfig.baby())`, nanoGPT's CPU config for shakespeare_char) with the same recipe
(batch 12, block 64, AdamW lr 1e-3 -> 1e-4 cosine, warm-up 100, beta2 0.99, wd 0.1, clip 1.0, eval every 250 steps on
20 batches per split), from the same seed, in the same process, one after the other.

    python bench/gpt_train.py [--iters 2000] [--threads N] [--order lesson,plain]
"""
import argparse, json, math, os, platform, time
import torch
import torch.nn.functional as F

from llmcourse.core import seed_everything
from llmcourse.gpt import GPT, GPTConfig, TrainConfig, train, shakespeare_char, token_batches


def plain_loop(model, train_ids, val_ids, iters, block=64, batch=12, lr=1e-3, min_lr=1e-4, warmup=100,
               eval_interval=250, eval_iters=20, seed=1337):
    "nanoGPT's train.py, reduced to what a CPU run uses: get_batch, AdamW groups, lr schedule, clip, eval."
    torch.manual_seed(seed)
    def get_batch(split):
        data = train_ids if split == "train" else val_ids
        ix = torch.randint(len(data) - block, (batch,))
        x = torch.stack([data[i:i+block] for i in ix])
        y = torch.stack([data[i+1:i+1+block] for i in ix])
        return x, y
    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ("train", "val"):
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                X, Y = get_batch(split)
                _, loss = model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean().item()
        model.train()
        return out
    def get_lr(it):
        if it < warmup: return lr * (it + 1) / (warmup + 1)
        if it > iters: return min_lr
        ratio = (it - warmup) / (iters - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))
    curve, t0 = [], time.perf_counter()
    X, Y = get_batch("train")
    for it in range(iters + 1):
        for g in opt.param_groups: g["lr"] = get_lr(it)
        if it % eval_interval == 0 and it > 0 or it == iters:
            losses = estimate_loss()
            curve.append((it, time.perf_counter() - t0, losses["val"]))
        if it == iters: break
        _, loss = model(X, Y)
        X, Y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return curve, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--order", default="lesson,plain")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    tok, tr, va = shakespeare_char()
    tokens = a.iters * 12 * 64
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    results = {}
    for which in a.order.split(","):
        seed_everything(1337)
        model = GPT(GPTConfig.baby(vocab_size=tok.vocab_size))
        load0 = os.getloadavg()[0]
        if which == "lesson":
            tc = TrainConfig.nanogpt_cpu(max_iters=a.iters)
            h = train(model, token_batches(tr, va, 64), tc, device="cpu", progress=False)
            curve = [(r["step"], r["time"], r["val_loss"]) for r in h.rows if "val_loss" in r]
            secs = h.seconds
        else:
            curve, secs = plain_loop(model, tr, va, a.iters)
        results[which] = dict(seconds=secs, tokens_per_s=tokens / secs, ms_per_step=1000 * secs / a.iters,
                              final_val=curve[-1][2], curve=curve, load_before=load0, load_after=os.getloadavg()[0])
        print(f"{which:7s}: {a.iters} steps in {secs:6.1f} s, {tokens/secs:8.0f} tokens/s, "
              f"{1000*secs/a.iters:5.1f} ms/step, val {curve[-1][2]:.4f} (load {load0:.1f} -> {os.getloadavg()[0]:.1f})")
        print("         val loss vs wall time: " + ", ".join(f"{s}:{t:.0f}s:{v:.3f}" for s, t, v in curve))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in results.items()}))


if __name__ == "__main__": main()

"""Generation tokens/s: `llmcourse.gpt.generate` with and without the KV cache, and `GPT2LMHeadModel.generate`
(greedy, with its own cache) on the same weights. Random weights: speed does not depend on them.

    python bench/06_gpt/gpt_generate.py [--configs baby,gpt2] [--new 100] [--threads N]

Writes `generate.json` and the `generate` section of RESULTS.md.
"""
import argparse, os, platform, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import torch

from llmcourse.gpt import GPT, GPTConfig, generate, gpt_to_hf


def timed(fn, repeats=2):
    fn() # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="baby,gpt2")
    ap.add_argument("--new", type=int, default=100, help="tokens to generate")
    ap.add_argument("--prompt", type=int, default=8, help="prompt length")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    lines = ["| model | new tokens | ours, KV cache | ours, no cache | HF generate (cache) | HF generate (no cache) | greedy equal |",
             "|---|---|---|---|---|---|---|"]
    rows, load0 = [], os.getloadavg()
    for name in a.configs.split(","):
        cfg = getattr(GPTConfig, name)() if name != "baby" else GPTConfig.baby(block_size=256)
        torch.manual_seed(0)
        model = GPT(cfg).eval()
        hf = gpt_to_hf(model)
        prompt = torch.randint(0, cfg.vocab_size, (1, a.prompt))
        n = min(a.new, cfg.block_size - a.prompt)
        mask = torch.ones_like(prompt)
        runs = {
            "cache": lambda: generate(model, prompt, n, temperature=0, use_cache=True),
            "nocache": lambda: generate(model, prompt, n, temperature=0, use_cache=False),
            "hf": lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                      pad_token_id=0, eos_token_id=None),
            "hf_nocache": lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                              do_sample=False, pad_token_id=0, eos_token_id=None, use_cache=False),
        }
        with torch.inference_mode():
            res = {k: timed(f) for k, f in runs.items()}
        same = all(v[1].tolist() == res["cache"][1].tolist() for v in res.values())
        cells = " | ".join(f"{n/res[k][0]:.0f} tok/s" for k in runs)
        lines.append(f"| {name} ({model.num_params()/1e6:.1f}M, context {cfg.block_size}) | {n} | {cells} | {same} |")
        rows.append(dict(model=name, params=model.num_params(), new_tokens=n, greedy_equal=same,
                         tokens_per_s={k: n / res[k][0] for k in runs}))
        print(lines[-1], flush=True)
    harness.record(__file__, "generate", dict(rows=rows, prompt=a.prompt, load_before=load0, load_after=os.getloadavg()))
    harness.write_section(__file__, "generate", "\n".join([
        "## Generation speed", "", f"`{harness.command()}` at commit `{harness.commit()}`. Machine: {harness.machine_line()}; "
        f"load average before {load0[0]:.2f}.", "", "Random weights (speed does not depend on them), greedy decoding, a prompt of "
        f"{a.prompt} tokens, best of 2 after a warm-up; \"greedy equal\" says all four produced the same tokens.", "", *lines]))


if __name__ == "__main__": main()

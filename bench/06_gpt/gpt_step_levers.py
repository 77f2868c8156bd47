"""Lesson 06: what each lever does to one training step of nanoGPT's CPU recipe, measured in CPU time.

    python bench/06_gpt/gpt_step_levers.py [--nanogpt /path/to/nanoGPT] [--steps 40] [--rounds 3] [--threads 1]

The whole-process race (`gpt_vs_nanogpt.py`) needs an idle machine. This one measures the CPU time each training step
takes (`time.process_time`, this process's threads together), which other programs on a busy machine disturb far less
than the wall clock; with one thread it is close to the work itself. The variants take turns, `--rounds` times, and
the median step of each is kept. With `--nanogpt`, nanoGPT's own model and optimizer (its `model.py`, imported from
that folder, never copied here) run the same step for reference. Writes `step_levers.json` and the `step_levers`
section of RESULTS.md.
"""
import argparse, contextlib, importlib.util, os, statistics, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import torch
import torch.nn.functional as F
import llmcourse.gpt as gpt

VARIANTS = {
    "float32": "the lesson's step: float32, foreach AdamW",
    "float32-fused": "float32, fused AdamW",
    "bfloat16": "bfloat16 matrix products, attention in float32 (`nanogpt_cpu_fast`)",
    "bfloat16-fused": "bfloat16, fused AdamW",
    "float32-nobias": "float32, no biases (nanoGPT's architecture)",
    "bfloat16-nobias": "bfloat16, no biases",
    "bfloat16-attn-bf16": "bfloat16, attention in bfloat16 too",
    "bfloat16-compile": "bfloat16, `torch.compile` (its compile time is the first step's wall time)",
    "eval-float32": "one evaluation batch (forward only), float32",
    "eval-bfloat16": "one evaluation batch (forward only), bfloat16",
    "nanogpt": "nanoGPT's model.py and optimizer, float32 (no biases, exact GELU)",
}

def make(variant, nano, vocab):
    "Model, optimizer and forward context of `variant`."
    torch.manual_seed(0)
    tc = gpt.TrainConfig.nanogpt_cpu()
    if variant == "nanogpt":
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            m = nano.GPT(nano.GPTConfig(block_size=64, vocab_size=vocab, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False))
            opt = m.configure_optimizers(tc.weight_decay, tc.lr, (tc.beta1, tc.beta2), "cpu")
        return m, opt, contextlib.nullcontext
    m = gpt.GPT(gpt.GPTConfig.baby(vocab_size=vocab, bias="nobias" not in variant))
    opt = gpt.configure_optimizer(m, tc)
    if "fused" in variant: opt = torch.optim.AdamW(opt.param_groups, lr=tc.lr, betas=(tc.beta1, tc.beta2), fused=True)
    bf16 = "bfloat16" in variant
    return m, opt, (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

def attention_in_bf16(on:bool):
    "Switch `CausalSelfAttention`'s float32 branch off (on=True) or back on."
    if on:
        def forward(self, x, cache=None):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q, k, v = [t.view(B, T, self.n_head, C//self.n_head).transpose(1, 2) for t in (q, k, v)]
            return self.resid_dropout(self.c_proj(self.attend(q, k, v).transpose(1, 2).contiguous().view(B, T, C)))
        gpt.CausalSelfAttention.forward = forward
    else: gpt.CausalSelfAttention.forward = ORIGINAL_FORWARD

ORIGINAL_FORWARD = gpt.CausalSelfAttention.forward

def step_times(variant, nano, get_batch, vocab, steps):
    "CPU milliseconds of each of `steps` training steps (or evaluation batches) after 5 warm-up ones."
    attention_in_bf16(variant == "bfloat16-attn-bf16")
    m, opt, ctx = make(variant, nano, vocab)
    g, out = torch.Generator().manual_seed(0), []
    evaluating = variant.startswith("eval")
    if evaluating: m.eval()
    if variant.endswith("compile"): m = torch.compile(m)
    for i in range(steps + 5):
        t, wall = time.process_time(), time.perf_counter()
        x, y = get_batch("train", 12, g)
        if evaluating:
            with torch.no_grad(), ctx(): m(x, y)[1].item()
        else:
            with ctx(): _, loss = m(x, y)
            loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
            loss.item()
        if i == 0: COMPILE_S.setdefault(variant, []).append(time.perf_counter() - wall)
        if i >= 5: out.append(1000 * (time.process_time() - t))
    attention_in_bf16(False)
    return out

COMPILE_S = {} # variant -> wall seconds of each first step (torch.compile compiles there)

def hide_nanogpt_path():
    "Name the nanoGPT folder `<nanoGPT>` in the command this run records: bench files hold no machine paths."
    for i, arg in enumerate(sys.argv[:-1]):
        if arg == "--nanogpt": sys.argv[i + 1] = "<nanoGPT>"
    sys.argv = [("--nanogpt=<nanoGPT>" if a.startswith("--nanogpt=") else a) for a in sys.argv]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nanogpt", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default=",".join(v for v in VARIANTS if not v.endswith("compile")),
                    help=f"of {', '.join(VARIANTS)}; compile takes minutes on two cores, so it runs only when named")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hide_nanogpt_path()
    if "compile" in a.variants: os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp() # a cold compile, as a first run has
    nano = None
    if a.nanogpt:
        spec = importlib.util.spec_from_file_location("nanogpt_model", a.nanogpt/"model.py")
        nano = importlib.util.module_from_spec(spec); spec.loader.exec_module(nano)
    variants = [v for v in a.variants.split(",") if v != "nanogpt" or nano]
    tok, tr, va = gpt.shakespeare_char()
    get_batch = gpt.token_batches(tr, va, 64)
    load0, times = os.getloadavg(), {v: [] for v in variants}
    for r in range(a.rounds):
        for v in variants:
            times[v] += step_times(v, nano, get_batch, tok.vocab_size, a.steps)
            print(f"round {r} {v:20s} median {statistics.median(times[v]):6.1f} ms", flush=True)
    base = statistics.median(times["float32"]) if "float32" in times else None
    rows = [dict(variant=v, what=VARIANTS[v], median_ms=statistics.median(t), p10_ms=sorted(t)[len(t) // 10],
                 first_step_wall_s=COMPILE_S[v],
                 vs_float32=(base / statistics.median(t)) if base and not v.startswith("eval") else None) for v, t in times.items()]
    harness.record(__file__, "step_levers", dict(steps=a.steps, rounds=a.rounds, threads=a.threads, rows=rows,
                                                 load_before=load0, load_after=os.getloadavg()))
    lines = ["## One training step, lever by lever (CPU time)", "",
             f"`{harness.command()}` at commit `{harness.commit()}`. Machine: {harness.machine_line()}. Load average "
             f"before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f}.", "",
             f"The baby model, batch 12 x 64, {a.steps} steps per variant and round, {a.rounds} rounds taking turns; CPU "
             "milliseconds per step (`time.process_time`), median and 10th percentile. \"Speed vs float32\" is the lesson "
             "step's median over the variant's.", "",
             "| variant | what | median ms | 10th percentile ms | speed vs float32 | first step, wall s (each round) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['what']} | {r['median_ms']:.1f} | {r['p10_ms']:.1f} | "
              + (f"{r['vs_float32']:.2f}x" if r["vs_float32"] else "-") + " | "
              + ", ".join(f"{x:.2f}" for x in r["first_step_wall_s"]) + " |" for r in rows]
    harness.write_section(__file__, "step_levers", "\n".join(lines))

if __name__ == "__main__": main()

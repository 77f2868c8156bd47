"""Lesson 06 against nanoGPT: whole-process time and validation loss at nanoGPT's CPU recipe for Shakespeare characters.

    python bench/06_gpt/gpt_vs_nanogpt.py --nanogpt /path/to/nanoGPT [--rounds 2] [--threads 2] [--levers]

nanoGPT (karpathy/nanoGPT, fetched by you into a folder outside this repository; its code is never copied here) runs
its own `train.py` with the command its README gives for a CPU: 4 layers, 4 heads, width 128, context 64, batch 12,
2,000 steps, no compile, dropout 0. `llmcourse.gpt.train` runs the same recipe (`TrainConfig.nanogpt_cpu`) on the
same model sizes: as the lesson writes it (float32, GPT-2's biases), with `TrainConfig.nanogpt_cpu_fast` (bfloat16
matrix products), and with bfloat16 on nanoGPT's own architecture, which has no biases (`GPTConfig.baby(bias=False)`). The runs take turns, round after round, each in a fresh process with `--threads` threads, and each
is timed from the start of its process to its end (imports, data, training, evaluations and checkpoints included).
Both final models are then scored in float32 on the whole validation split (every non-overlapping window of 64), which
no batch draw can move, next to the 20-batch estimate each program prints.

`--levers` adds runs that switch one thing at a time: no biases in float32, fused AdamW, attention in bfloat16, no evaluations,
`torch.compile` (its compile time counted). Writes `vs_nanogpt.json`, the `vs_nanogpt` section of RESULTS.md and the
summary the lesson shows (`llmcourse/assets/gpt/vs_nanogpt.json`). Timings need an idle machine: the load average is
recorded before and after every run.
"""
import argparse, contextlib, importlib.util, json, os, re, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
import harness

RECIPE = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
          "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
VARIANTS = { # name -> what changes from `TrainConfig.nanogpt_cpu()` on `GPTConfig.baby()`
    "lesson": "float32, as the lesson writes it",
    "fast": "bfloat16 matrix products (`nanogpt_cpu_fast`)",
    "fast-nobias": "bfloat16, nanoGPT's model: no biases (`GPTConfig.baby(bias=False)`)",
    "nobias": "float32, no biases",
    "fast-fused": "bfloat16, fused AdamW",
    "fast-attn-bf16": "bfloat16, attention in bfloat16 too",
    "fast-no-eval": "bfloat16, no evaluation before the last step",
    "fast-compile": "bfloat16, `torch.compile` (compile time counted)",
}
LEVERS = ["nobias", "fast-fused", "fast-attn-bf16", "fast-no-eval", "fast-compile"]


def short_warmup(iters:int) -> int:
    "The warm-up of a shortened run (`--iters` below the recipe's 2000, for a quick look): a twentieth, as 100 is of 2000."
    return max(1, iters // 20)


def run_ours(variant:str, iters:int, out_dir:Path):
    "One training run in this process (the child of `main`); prints a RESULT line."
    import torch
    import llmcourse.gpt as gpt
    from llmcourse.core import seed_everything
    tok, tr, va = gpt.shakespeare_char()
    seed_everything(1337)
    model = gpt.GPT(gpt.GPTConfig.baby(vocab_size=tok.vocab_size, bias="nobias" not in variant))
    kw = dict(max_iters=iters, lr_decay_iters=iters, ckpt_path=str(out_dir/"ckpt.pt"))
    if iters != 2000: kw.update(warmup_iters=short_warmup(iters), eval_interval=max(1, iters // 8))
    if variant == "fast-no-eval": kw["eval_interval"] = 10**9
    tc = gpt.TrainConfig.nanogpt_cpu(**kw) if variant in ("lesson", "nobias") else gpt.TrainConfig.nanogpt_cpu_fast(**kw)
    if variant == "fast-fused":
        plain = gpt.configure_optimizer
        def fused(model, tc):
            opt = plain(model, tc)
            return torch.optim.AdamW(opt.param_groups, lr=tc.lr, betas=(tc.beta1, tc.beta2), fused=True)
        gpt.configure_optimizer = fused
    if variant == "fast-attn-bf16": # the attention without its float32 branch
        def forward(self, x, cache=None):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            q, k, v = [t.view(B, T, self.n_head, C//self.n_head).transpose(1, 2) for t in (q, k, v)]
            y = self.attend(q, k, v).transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))
        gpt.CausalSelfAttention.forward = forward
    net = model
    if variant == "fast-compile":
        net = torch.compile(model)
        net.cfg = model.cfg
    t0 = time.perf_counter()
    h = gpt.train(net, gpt.token_batches(tr, va, 64), tc, device="cpu", progress=False)
    print("RESULT " + json.dumps(dict(loop_s=time.perf_counter() - t0, val=h.last("val_loss"), train=h.last("train_loss"),
                                      curve=[(r["step"], r["val_loss"]) for r in h.rows if "val_loss" in r])), flush=True)


def whole_split_val(kind:str, ckpt:Path, nanogpt_dir:Path|None=None) -> float:
    "Float32 loss of a saved final model on every non-overlapping 64-character window of the validation split, and its step."
    import torch
    if not ckpt.exists(): return None, None # nanoGPT saves only when the validation loss improved
    from llmcourse.gpt import GPT, GPTConfig, shakespeare_char
    tok, _, va = shakespeare_char()
    if kind == "nanogpt":
        spec = importlib.util.spec_from_file_location("nanogpt_model", nanogpt_dir/"model.py")
        mod = importlib.util.module_from_spec(spec)
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            spec.loader.exec_module(mod)
            ck = torch.load(ckpt, map_location="cpu", weights_only=False)
            model = mod.GPT(mod.GPTConfig(**ck["model_args"]))
        model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()})
        step = ck["iter_num"]
    else:
        ck = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = GPT(GPTConfig(**ck["model_config"])); step = ck["iter"]
        model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()}) # compiled: prefixed names
    model.eval()
    n = (len(va) - 1) // 64
    x = va[:n*64].view(n, 64); y = va[1:n*64+1].view(n, 64)
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, 256):
            logits, _ = model(x[i:i+256], y[i:i+256])
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y[i:i+256].reshape(-1), reduction="sum").item()
    return total / (n*64), step


def prepare_nanogpt(src:Path, work:Path) -> Path:
    "A copy of nanoGPT with tiny Shakespeare prepared as its `prepare.py` does, from the course's data mirror."
    from llmcourse.data import load_tiny_shakespeare
    for f in ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py", "data/shakespeare_char/prepare.py"):
        if not (src/f).exists(): sys.exit(f"{src} is not a nanoGPT checkout: {f} is missing. Fetch karpathy/nanoGPT and pass its folder.")
    dst = work/"nanoGPT"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "out*", "*.bin", "*.pkl", "input.txt"))
    (dst/"data/shakespeare_char/input.txt").write_text(load_tiny_shakespeare())
    subprocess.run([sys.executable, "prepare.py"], cwd=dst/"data/shakespeare_char", check=True, capture_output=True)
    return dst


def timed_process(cmd, cwd, env) -> dict:
    "Run `cmd`; its wall time, its CPU time (user + system, its threads together) and the load around it."
    load0, before = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode: sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-3000:]}")
    return dict(wall_s=wall, cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                load_before=[round(x, 2) for x in load0], load_after=[round(x, 2) for x in os.getloadavg()], stdout=out.stdout)


def hide_nanogpt_path():
    "Name the nanoGPT folder `<nanoGPT>` in the command this run records: bench files hold no machine paths."
    for i, arg in enumerate(sys.argv[:-1]):
        if arg == "--nanogpt": sys.argv[i + 1] = "<nanoGPT>"
    sys.argv = [("--nanogpt=<nanoGPT>" if a.startswith("--nanogpt=") else a) for a in sys.argv]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nanogpt", type=Path, help="a folder with karpathy/nanoGPT (outside this repository)")
    ap.add_argument("--nanogpt-commit", default=None, help="the nanoGPT commit, when its folder has no .git")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2000, help="fewer for a quick look; the recipe is 2000")
    ap.add_argument("--variants", default="lesson,fast,fast-nobias", help=f"ours to run, of {', '.join(VARIANTS)}")
    ap.add_argument("--levers", action="store_true", help=f"add {', '.join(LEVERS)} (once each)")
    ap.add_argument("--no-record", action="store_true", help="print, but write no JSON, RESULTS.md or asset")
    ap.add_argument("--run-ours", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--report", action="store_true", help="only rewrite RESULTS.md and the lesson's asset from vs_nanogpt.json")
    a = ap.parse_args()
    if a.run_ours: return run_ours(a.run_ours, a.iters, a.out_dir)
    if a.report: return write_outputs(json.loads(HERE.with_name("vs_nanogpt.json").read_text()))
    if not a.nanogpt: ap.error("--nanogpt is required: the folder of a karpathy/nanoGPT checkout")
    src = a.nanogpt.resolve()
    hide_nanogpt_path()
    if harness.ROOT in [src, *src.parents]: sys.exit(f"{src} is inside this repository; keep nanoGPT's code outside it.")
    nano_commit = a.nanogpt_commit or subprocess.run(["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"],
                                                     capture_output=True, text=True).stdout.strip() or "unknown"
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads), "LLMCOURSE_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(harness.ROOT), os.environ.get("PYTHONPATH")]))}
    variants = [v for v in a.variants.split(",") if v]
    recipe = RECIPE if a.iters == 2000 else [r for r in RECIPE if not r.startswith(("--max_iters", "--lr_decay"))] + [
        f"--max_iters={a.iters}", f"--lr_decay_iters={a.iters}", f"--warmup_iters={short_warmup(a.iters)}",
        f"--eval_interval={max(1, a.iters // 8)}"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp); nano = prepare_nanogpt(src, work)
        plan = [(r, who) for r in range(a.rounds) for who in (["nanogpt"] + variants)[::1 if r % 2 == 0 else -1]]
        plan += [(a.rounds, v) for v in (LEVERS if a.levers else [])]
        for k, (r, who) in enumerate(plan):
            out_dir = work/f"run{k}-{who}"; out_dir.mkdir()
            if who == "nanogpt":
                res = timed_process([sys.executable, "train.py", "config/train_shakespeare_char.py", *recipe, f"--out_dir={out_dir}"], nano, env)
                m = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", res["stdout"])
                res.update(val=float(m[-1][2]), train=float(m[-1][1]), curve=[(int(s), float(v)) for s, _, v in m])
                res["whole_val"], res["ckpt_step"] = whole_split_val("nanogpt", out_dir/"ckpt.pt", nano)
            else:
                res = timed_process([sys.executable, str(HERE), "--run-ours", who, "--iters", str(a.iters), "--out-dir", str(out_dir)], harness.ROOT, env)
                res.update(json.loads([l for l in res["stdout"].splitlines() if l.startswith("RESULT ")][-1][7:]))
                res["whole_val"], res["ckpt_step"] = whole_split_val("ours", out_dir/"ckpt.pt")
            del res["stdout"]
            runs.append(dict(round=r, who=who, **res))
            print(f"round {r} {who:15s} {res['wall_s']:7.1f} s wall, {res['cpu_s']:7.1f} s CPU, val {res['val']:.4f} "
                  f"(whole split {res['whole_val'] or float('nan'):.4f} at step {res['ckpt_step']}), load {res['load_before'][0]} -> {res['load_after'][0]}", flush=True)
    if a.no_record:
        print(json.dumps(summarise(runs), indent=1)); return
    results = dict(recipe=recipe, iters=a.iters, threads=a.threads, rounds=a.rounds, nanogpt_commit=nano_commit, runs=runs)
    write_outputs(json.loads(harness.record(__file__, "vs_nanogpt", results).read_text()))


def summarise(runs:list) -> dict:
    "Per program: its runs' wall and CPU times, their ratios to nanoGPT's, and the validation losses."
    summary, order = {}, list(dict.fromkeys(r["who"] for r in runs))
    for who in ["nanogpt"] + [w for w in order if w != "nanogpt"]:
        rs = [r for r in runs if r["who"] == who]
        summary[who] = dict(runs=len(rs), best_wall_s=min(r["wall_s"] for r in rs), mean_wall_s=sum(r["wall_s"] for r in rs) / len(rs),
                            best_cpu_s=min(r["cpu_s"] for r in rs), mean_cpu_s=sum(r["cpu_s"] for r in rs) / len(rs),
                            val=[r["val"] for r in rs], whole_val=[r["whole_val"] for r in rs], what=VARIANTS.get(who, "nanoGPT's own train.py"))
    nano = summary.get("nanogpt")
    for who, s in summary.items():
        s["speed_vs_nanogpt"] = nano["best_wall_s"] / s["best_wall_s"] if nano else None
        s["speed_vs_nanogpt_mean"] = nano["mean_wall_s"] / s["mean_wall_s"] if nano else None
        s["cpu_speed_vs_nanogpt"] = nano["mean_cpu_s"] / s["mean_cpu_s"] if nano else None
    return summary


def write_outputs(rec:dict):
    "The `vs_nanogpt` section of RESULTS.md and the lesson's asset, from a run recorded in `vs_nanogpt.json`."
    res, m = rec["results"], rec["machine"]
    runs, summary = res["runs"], summarise(res["runs"])
    fmt = lambda x: f"{x:.2f}x" if x else "-"
    rows = ["| run | what | processes | wall time, best (s) | speed vs nanoGPT: wall, best / mean | CPU time, mean (s) | speed vs nanoGPT: CPU | val, 20 batches | val, whole split |",
            "|---|---|---|---|---|---|---|---|---|"]
    for who, s in summary.items():
        rows.append(f"| {who} | {s['what']} | {s['runs']} | {s['best_wall_s']:.1f} | {fmt(s['speed_vs_nanogpt'])} / "
                    f"{fmt(s['speed_vs_nanogpt_mean'])} | {s['mean_cpu_s']:.1f} | {fmt(s['cpu_speed_vs_nanogpt'])} | "
                    f"{', '.join(f'{v:.4f}' for v in s['val'])} | {', '.join(f'{v:.4f}' if v else '-' for v in s['whole_val'])} |")
    loads = ", ".join(f"{r['who']} {r['load_before'][0]}->{r['load_after'][0]}" for r in runs)
    idle = max(max(r["load_before"][0], r["load_after"][0]) for r in runs) < 1.5 * res["threads"] + 0.5
    harness.write_section(__file__, "vs_nanogpt", "\n".join([
        "## Against nanoGPT: whole-process time at nanoGPT's CPU recipe", "",
        f"`{rec['command']}` at commit `{rec['commit']}` ({rec['date']}), nanoGPT commit `{res['nanogpt_commit']}`, "
        f"{res['iters']} steps, {res['threads']} threads per run, {res['rounds']} rounds taking turns.",
        f"Machine: {harness.machine_line(m)}.", f"Load average (1 min) before -> after each run, in order: {loads}.", "",
        "Wall time is the whole process, from its start to its exit; CPU time is the process's user + system time, its "
        "threads together. \"Speed vs nanoGPT\" is nanoGPT's time over the run's. Validation loss: the 20-batch "
        "estimate each program prints at its last step, and the float32 loss of its final model on the whole validation "
        "split (1,742 windows of 64).", "",
        *rows, "",
        ("The machine was idle: the wall times compare." if idle else
         "**The machine was shared while these ran** (the load average is above the cores): the wall time depends on "
         "how busy it was during each run, so only the CPU-time ratio compares; run again on an idle machine for the "
         "wall-time ratio.")]))
    asset = harness.ROOT/"llmcourse"/"assets"/"gpt"/"vs_nanogpt.json"
    asset.parent.mkdir(parents=True, exist_ok=True)
    asset.write_text(json.dumps(dict(command=rec["command"], commit=rec["commit"], date=rec["date"], machine=harness.machine_line(m),
                                     nanogpt_commit=res["nanogpt_commit"], iters=res["iters"], threads=res["threads"], idle=idle,
                                     loads=[(r["who"], r["load_before"][0], r["load_after"][0]) for r in runs],
                                     summary=summary), indent=1) + "\n")

if __name__ == "__main__": main()

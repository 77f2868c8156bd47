"""Train lesson 10's spoken-digit Whisper under several recipes at once and record test WER against steps.

Each recipe runs in its own process (one torch thread, the GPU if there is one), so a machine with many cores
compares recipes in the time of one. Results: one JSON history per recipe and the weights, under `--out`.

    python bench/whisper_digits_sweep.py --out /tmp/sweep --recipes base long wide
"""
from __future__ import annotations
import argparse, json, multiprocessing as mp, time
from pathlib import Path

RECIPES = {  # name: (model config overrides, train_digits arguments, DigitUtterances arguments)
    "base": ({}, dict(steps=1500, batch_size=32, lr=3e-3), {}),  # the notebook's slow cell before SpecAugment
    "long_b64": ({}, dict(steps=4000, batch_size=64, lr=3e-3), {}),
    "wide": (dict(d_model=128), dict(steps=4000, batch_size=32, lr=1.5e-3), {}),
    "wide_drop": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), {}),
    "spec": ({}, dict(steps=3500, batch_size=32, lr=3e-3), dict(spec_augment=True)),
    "spec_speed": ({}, dict(steps=3500, batch_size=32, lr=3e-3), dict(spec_augment=True, speed=(0.75, 1.33))),
    "wide_spec": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(spec_augment=True)),
    "wide_spec_speed": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(spec_augment=True, speed=(0.75, 1.33))),
    "wide_speed": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(speed=(0.75, 1.33))),
    "wide_drop_spec_speed": (dict(d_model=128, dropout=0.1), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(spec_augment=True, speed=(0.75, 1.33))),
    "spec_speed_b64": ({}, dict(steps=2500, batch_size=64, lr=3e-3), dict(spec_augment=True, speed=(0.75, 1.33))),
    "wide_spec_speed_s1": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3, seed=1), dict(spec_augment=True, speed=(0.75, 1.33))),
}

def run(name:str, out:str, budget:float|None=None):
    import torch
    torch.set_num_threads(1)
    from llmcourse.core import seed_everything
    from llmcourse.whisper import Whisper, WhisperModelConfig, DigitUtterances, digit_test_set, train_digits
    cfg_kw, train_kw, data_kw = RECIPES[name]
    seed_everything(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Whisper(WhisperModelConfig.digits(**cfg_kw)).to(device)
    t0 = time.perf_counter()
    hist = train_digits(model, DigitUtterances(**data_kw), digit_test_set(200), warmup=100, eval_every=250, time_budget=budget, **train_kw)
    wall = time.perf_counter() - t0
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    hist.save(out/f"{name}.json")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out/f"{name}.pt")
    wers = [(r["step"], round(r["test_wer"], 4)) for r in json.loads((out/f"{name}.json").read_text()) if "test_wer" in r]
    print(f"{name}: {wall:.0f} s on {device}; test WER by step {wers}", flush=True)
    return name, wall, wers

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipes", nargs="*", default=list(RECIPES))
    ap.add_argument("--budget", type=float, default=None, help="seconds of training per recipe at most")
    a = ap.parse_args()
    with mp.get_context("spawn").Pool(len(a.recipes)) as pool:
        results = pool.starmap(run, [(r, a.out, a.budget) for r in a.recipes])
    Path(a.out, "summary.json").write_text(json.dumps({n: dict(seconds=w, wer=x, recipe=RECIPES[n]) for n, w, x in results}, indent=1))

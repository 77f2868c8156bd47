"""Train lesson 10's spoken-digit Whisper under several recipes at once and record test WER against steps.

Each recipe runs in its own process (one torch thread, the GPU if there is one), so a machine with many cores
compares recipes in the time of one. Results under `--out`: one JSON history per recipe, `summary.json`, and the
float16 weights of every recipe packed into `weights_K.pt` files of at most `--per-file` recipes each.

The first recipes (up to `wide_drop_spec_speed_s1`) ran on 2026-11-26 with the features as recorded (`peak=None`).
The `n_` recipes scale every utterance, training and test, to a peak of 0.5 first (`DigitUtterances(peak=0.5)`,
the default since 2026-11-27): the held-out speaker theo records at a tenth of the others' level. `tilt` (this
script only) adds a random straight line across the mel bins of each training utterance, in log units: a cheap
stand-in for a different microphone; `eq` (this script only) adds a random smooth curve instead (three cosines
over the mel axis). The `e_` recipes also keep an exponential moving average of the weights
(decay 0.999, `torch.optim.swa_utils.AveragedModel`) and log its WER as `avg_test_wer`. `sat` (2026-11-27)
equalises every speaker, in training and in the test set, to the training speakers' average long-term spectrum
(`equalizer_gains`): speaker-adaptive training; its logged test WER is on equalised test features.

    python bench/whisper_digits_sweep.py --out /tmp/sweep --recipes base long wide
"""
from __future__ import annotations
import argparse, json, multiprocessing as mp, time
from pathlib import Path

RECIPES = {  # name: (model config overrides, train_digits arguments, DigitUtterances arguments)
    "base": ({}, dict(steps=1500, batch_size=32, lr=3e-3), dict(peak=None)),  # the notebook's slow cell before SpecAugment
    "long_b64": ({}, dict(steps=4000, batch_size=64, lr=3e-3), dict(peak=None)),
    "wide": (dict(d_model=128), dict(steps=4000, batch_size=32, lr=1.5e-3), dict(peak=None)),
    "wide_drop": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(peak=None)),
    "spec": ({}, dict(steps=3500, batch_size=32, lr=3e-3), dict(spec_augment=True, peak=None)),
    "spec_speed": ({}, dict(steps=3500, batch_size=32, lr=3e-3), dict(spec_augment=True, speed=(0.75, 1.33), peak=None)),
    "wide_spec": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(spec_augment=True, peak=None)),
    "wide_spec_speed": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(spec_augment=True, speed=(0.75, 1.33), peak=None)),
    "wide_speed": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(speed=(0.75, 1.33), peak=None)),
    "wide_drop_spec_speed": (dict(d_model=128, dropout=0.1), dict(steps=3500, batch_size=32, lr=1.5e-3), dict(spec_augment=True, speed=(0.75, 1.33), peak=None)),
    "spec_speed_b64": ({}, dict(steps=2500, batch_size=64, lr=3e-3), dict(spec_augment=True, speed=(0.75, 1.33), peak=None)),
    "wide_spec_speed_s1": (dict(d_model=128), dict(steps=3500, batch_size=32, lr=1.5e-3, seed=1), dict(spec_augment=True, speed=(0.75, 1.33), peak=None)),
    "n_wide_drop": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), {}),
    "n_vtlp2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(vtlp=0.2)),
    "n_vtlp3": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(vtlp=0.3)),
    "n_vtlp2_tilt": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(vtlp=0.2, tilt=0.25)),
    "n_vtlp2_spec": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(vtlp=0.2, spec_augment=True)),
    "n_vtlp2_speed": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(vtlp=0.2, speed=(0.8, 1.25))),
    "n_vtlp2_s1": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=1), dict(vtlp=0.2)),
    "n_vtlp2_s2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=2), dict(vtlp=0.2)),
    "n_vtlp2_6k": (dict(d_model=128, dropout=0.1), dict(steps=6500, batch_size=32, lr=1.5e-3), dict(vtlp=0.2)),
    "n_vtlp2_d192": (dict(d_model=192, dropout=0.2), dict(steps=5000, batch_size=32, lr=1e-3), dict(vtlp=0.2)),
    "n_vtlp2_d64": (dict(dropout=0.1), dict(steps=5000, batch_size=32, lr=3e-3), dict(vtlp=0.2)),
    "n_vtlp3_tilt_spec": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3), dict(vtlp=0.3, tilt=0.25, spec_augment=True)),
    "n_vtlp2_tilt_s1": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=1), dict(vtlp=0.2, tilt=0.25)),
    "e_vtlp2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, ema=0.999), dict(vtlp=0.2)),
    "e_vtlp2_s1": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=1, ema=0.999), dict(vtlp=0.2)),
    "e_vtlp2_s2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=2, ema=0.999), dict(vtlp=0.2)),
    "e_vtlp2_s3": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=3, ema=0.999), dict(vtlp=0.2)),
    "e_vtlp2_tilt4": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, ema=0.999), dict(vtlp=0.2, tilt=0.4)),
    "e_vtlp2_tilt4_s1": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=1, ema=0.999), dict(vtlp=0.2, tilt=0.4)),
    "e_vtlp2_tilt4_s2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=2, ema=0.999), dict(vtlp=0.2, tilt=0.4)),
    "e_vtlp2_eq": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, ema=0.999), dict(vtlp=0.2, eq=0.3)),
    "e_vtlp2_eq_s2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=2, ema=0.999), dict(vtlp=0.2, eq=0.3)),
    "n_vtlp3_tilt_s2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=2), dict(vtlp=0.3, tilt=0.25)),
    "e_vtlp2_sat": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, ema=0.999), dict(vtlp=0.2, sat=True)),
    "e_vtlp2_sat_s2": (dict(d_model=128, dropout=0.1), dict(steps=5000, batch_size=32, lr=1.5e-3, seed=2, ema=0.999), dict(vtlp=0.2, sat=True)),
}

def run(name:str, out:str, budget:float|None=None):
    import numpy as np, torch
    torch.set_num_threads(1)
    from llmcourse.core import seed_everything
    from llmcourse.data import load_fsdd
    from llmcourse.whisper import (Whisper, WhisperModelConfig, DigitUtterances, TEST_SPEAKERS, digit_test_set, equalizer_gains,
                                   train_digits)

    class Tilted(DigitUtterances):
        "Training utterances whose log-mel features get a random straight line (`tilt`) or smooth curve (`eq`) across the mel bins added."
        def __init__(self, tilt:float=0.0, eq:float=0.0, **kw): super().__init__(**kw); self.tilt, self.eq = tilt, eq
        def batch(self, n, rng):
            mel, tokens, texts = super().batch(n, rng)
            x = torch.linspace(-1, 1, mel.shape[1])  # (n_mels,)
            slope = torch.from_numpy(rng.uniform(-self.tilt, self.tilt, n)).float()  # (n,) rise from the middle to the top bin
            curve = slope[:, None] * x[None, :]  # (n, n_mels)
            if self.eq:  # three cosines over the mel axis, the k-th at most eq / k high: a random smooth equaliser
                amp = torch.from_numpy(rng.uniform(-self.eq, self.eq, (n, 3))).float() / torch.arange(1, 4)  # (n, 3)
                curve = curve + (amp[:, :, None] * torch.cos(torch.pi * torch.arange(1, 4)[:, None] * (x + 1) / 2)).sum(1)
            return mel + curve[:, :, None], tokens, texts

    cfg_kw, train_kw, data_kw = RECIPES[name]
    seed_everything(train_kw.get("seed", 0))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Whisper(WhisperModelConfig.digits(**cfg_kw)).to(device)
    data_kw = dict(data_kw); tilt, eq, sat = data_kw.pop("tilt", 0.0), data_kw.pop("eq", 0.0), data_kw.pop("sat", False)
    if sat: data_kw["gains"] = equalizer_gains(sorted(set(load_fsdd().frame.speaker) - set(TEST_SPEAKERS)))
    train = Tilted(tilt, eq, **data_kw) if tilt or eq else DigitUtterances(**data_kw)
    test = digit_test_set(200, peak=data_kw.get("peak", 0.5), equalize=sat)  # scored at the level the recipe trains at
    train_kw = dict(train_kw); ema = train_kw.pop("ema", None)
    averaged = None if ema is None else torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema))
    t0 = time.perf_counter()
    hist = train_digits(model, train, test, warmup=100, eval_every=250, time_budget=budget, averaged=averaged, **train_kw)
    wall = time.perf_counter() - t0
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    hist.save(out/f"{name}.json")
    weights = lambda m: {k: v.half().cpu() for k, v in m.state_dict().items()}
    torch.save({"config": dict(WhisperModelConfig.digits(**cfg_kw).__dict__), "state_dict": weights(model),
                **({} if averaged is None else {"averaged": weights(averaged.module)})}, out/f"{name}.pt")
    wers = [(r["step"], round(r["test_wer"], 4)) for r in json.loads((out/f"{name}.json").read_text()) if "test_wer" in r]
    print(f"{name}: {wall:.0f} s on {device}; test WER by step {wers}", flush=True)
    return name, wall, wers

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipes", nargs="*", default=list(RECIPES))
    ap.add_argument("--budget", type=float, default=None, help="seconds of training per recipe at most")
    ap.add_argument("--per-file", type=int, default=5, help="recipes' weights per packed weights_K.pt file")
    a = ap.parse_args()
    with mp.get_context("spawn").Pool(len(a.recipes)) as pool:
        results = pool.starmap(run, [(r, a.out, a.budget) for r in a.recipes])
    out = Path(a.out)
    out.joinpath("summary.json").write_text(json.dumps({n: dict(seconds=w, wer=x, recipe=RECIPES[n]) for n, w, x in results}, indent=1))
    import torch
    names = [n for n, _, _ in results]
    for k in range(0, len(names), a.per_file):  # few files: the device returns at most 8
        torch.save({n: torch.load(out/f"{n}.pt", weights_only=True) for n in names[k:k + a.per_file]}, out/f"weights_{k // a.per_file}.pt")
        for n in names[k:k + a.per_file]: (out/f"{n}.pt").unlink()

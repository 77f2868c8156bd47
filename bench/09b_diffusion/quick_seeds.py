"""Lesson 09b, quick mode over training seeds: the lesson's figure, seed by seed, for the regression check's margin.

For each training seed: the lesson's quick pipeline (lesson 09's CLIP, 4000 training images at 16 pixels, the judge
trained on real images with seed 0, the pixel-space U-Net trained with the lesson's quick recipe and this seed), the
guidance scale chosen at 20 DDIM steps and then the number of steps at that scale on validation seeds (1000+), and the
test seeds (2000+) scored once with those choices, as the lesson's cells do. Writes quick_seeds.json and a section of
RESULTS.md. Seed 0 is the lesson's own run.

Usage: nice -n 10 python bench/09b_diffusion/quick_seeds.py [--seeds 0 1 2 3 4] [--threads 1]
(Seeds may be split between processes; each adds its seeds to quick_seeds.json when the recipe is the same.)
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
from judge_setup import IMAGE_SIZE as S, real_judge, seen_and_held
from llmcourse.core import seed_everything
from llmcourse.clip import make_shape_captions, to_pixels
from llmcourse.diffusion import (NoiseSchedule, UNet, UNetConfig, encode_prompts, match_interval, prompt_match,
                                 prompt_set, shapes_clip, text_to_images, train_diffusion)

RECIPE = dict(steps=800, batch_size=64, lr=2e-3, ema_decay=0.995, snr_gamma=5.0)  # the lesson's quick recipe
CAPTION_DROP = 0.5  # the lesson's share of captions without size, without position
ap = argparse.ArgumentParser()
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4]); ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
clip, tok = shapes_clip()
judge, judge_acc = real_judge()
train = make_shape_captions(4000, "train", seed=1, image_size=S)
pixels, empty = to_pixels(train.images), encode_prompts(clip, tok, [""])
cond = lambda idx, rng: encode_prompts(clip, tok, [train.caption(i, CAPTION_DROP, rng) for i in idx])
sched = NoiseSchedule.cosine(prediction_type="v")
seen, held = seen_and_held()
SCALES, STEPS = (1.0, 1.5, 2.0, 3.0), (5, 10, 20)
val_seen, val_held = prompt_set(seen, 9), prompt_set(held, 2)
def write(runs):
    old = harness.lesson_dir(__file__)/"quick_seeds.json"  # seeds run by another process with the same recipe join the table
    if old.exists():
        prev = json.loads(old.read_text())["results"]
        if prev["recipe"] == RECIPE and prev["caption_drop"] == CAPTION_DROP:
            runs = {int(k): v for k, v in prev["runs"].items()} | runs
    runs = dict(sorted(runs.items()))
    seen_m = np.array([r["test"]["seen"]["match"][0] for r in runs.values()])
    held_m = np.array([r["test"]["held-out"]["match"][0] for r in runs.values()])
    summary = dict(seen_mean=float(seen_m.mean()), seen_min=float(seen_m.min()), seen_max=float(seen_m.max()), seen_sd=float(seen_m.std(ddof=1)) if len(seen_m) > 1 else None,
                   held_mean=float(held_m.mean()), held_min=float(held_m.min()), held_max=float(held_m.max()))
    harness.record(__file__, "quick_seeds", dict(recipe=RECIPE, caption_drop=CAPTION_DROP, judge_accuracy=judge_acc, runs=runs, summary=summary))
    pct = lambda t: f"{t[0]:.1%} [{t[1]:.1%}, {t[2]:.1%}]"
    rows = "\n".join(f"| {s} | {r['chosen']['scale']} | {r['chosen']['steps']} | {pct(r['test']['seen']['match'])} | {pct(r['test']['held-out']['match'])} | {r['train_cpu_s']:.0f} |"
                     for s, r in runs.items())
    sd = f", standard deviation {summary['seen_sd']:.1%}" if summary["seen_sd"] is not None else ""
    harness.write_section(__file__, "quick_seeds", f"""## Quick mode over training seeds {', '.join(map(str, runs))}

{harness.machine_line()}

The lesson's quick recipe ({RECIPE}, captions without size or position with probability {CAPTION_DROP}); judge accuracy
on 1000 real images {judge_acc:.1%}. Guidance scale and DDIM steps chosen on validation seeds (1000+), then test
seeds (2000+) scored once; 216 test samples of the 12 seen combinations, 204 of the 12 held-out ones, 95% bootstrap
intervals over samples. Training CPU time with {args.threads} thread(s).

| training seed | guidance | DDIM steps | test, seen | test, held-out | train CPU s |
| --- | --- | --- | --- | --- | --- |
{rows}

Seen combinations over seeds: mean {summary['seen_mean']:.1%}, lowest {summary['seen_min']:.1%}, highest {summary['seen_max']:.1%}{sd}.
Held-out: mean {summary['held_mean']:.1%}, lowest {summary['held_min']:.1%}, highest {summary['held_max']:.1%}.
""")
    print(open(harness.lesson_dir(__file__)/"RESULTS.md").read().split("<!-- section: quick_seeds -->")[1])

runs = {}
for seed in args.seeds:
    seed_everything(seed)
    unet = UNet(UNetConfig.tiny(context_dim=clip.cfg.text.d_model))
    c0 = time.process_time()
    train_diffusion(unet, sched, pixels, cond, empty=empty, seed=seed, **RECIPE)
    train_cpu = time.process_time() - c0
    gen = lambda p, sc, n, s: text_to_images(unet, sched, clip, tok, p, sc, n, s)
    val = {f"seen scale {sc}": float(prompt_match(judge, gen(val_seen[0], sc, 20, 1000), val_seen[1])["match"].mean()) for sc in SCALES}
    best_scale = max(SCALES, key=lambda sc: val[f"seen scale {sc}"])
    val |= {f"seen steps {n}": float(prompt_match(judge, gen(val_seen[0], best_scale, n, 1000), val_seen[1])["match"].mean()) for n in STEPS if n != 20}
    val[f"seen steps 20"] = val[f"seen scale {best_scale}"]
    best_steps = min(STEPS, key=lambda n: (-round(val[f"seen steps {n}"], 2), n))
    test = {}
    for name, combos, per in (("seen", seen, 18), ("held-out", held, 17)):
        p, l = prompt_set(combos, per)
        test[name] = dict(n=len(p), **{k: match_interval(v) for k, v in prompt_match(judge, gen(p, best_scale, best_steps, 2000), l).items()})
    runs[seed] = dict(train_cpu_s=train_cpu, validation=val, chosen=dict(scale=best_scale, steps=best_steps), test=test)
    print(seed, runs[seed]["chosen"], {k: round(v["match"][0], 3) for k, v in test.items()}, f"{train_cpu:.0f} s", flush=True)
    write(runs)  # after every seed, so that a cut-short run still reports the seeds it finished


"""Lesson 09b, quick mode: one training recipe of the pixel-space U-Net, scored on validation seeds only.

The lesson's quick pipeline (lesson 09's CLIP, 4000 training images drawn at 16 pixels, the judge trained on real
images) with the recipe's knobs changed; samples from seeds 1000+ (validation) at several guidance scales, seen
combinations (the 12 drawn in training) and held-out ones (the 12 never drawn). No test seed is touched here.
Each run writes `quick_recipe_<name>.json`; the section of RESULTS.md lists every run in the folder.

Usage: nice -n 10 python bench/09b_diffusion/quick_recipe.py --name base [--steps 800] [--lr 2e-3] [--batch 64]
       [--drop 0.5] [--snr-gamma 5] [--ema 0.995] [--seed 0] [--threads 1]
"""
import argparse, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
from judge_setup import IMAGE_SIZE as S, real_judge, seen_and_held
from llmcourse.core import seed_everything
from llmcourse.clip import COLOURS, SHAPES, make_shape_captions, to_pixels
from llmcourse.diffusion import (NoiseSchedule, UNet, UNetConfig, encode_prompts, prompt_match, prompt_set,
                                 shapes_clip, text_to_images, train_diffusion)

ap = argparse.ArgumentParser()
ap.add_argument("--name", required=True); ap.add_argument("--steps", type=int, default=800); ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--batch", type=int, default=64); ap.add_argument("--drop", type=float, default=0.5)
ap.add_argument("--snr-gamma", type=float, default=None); ap.add_argument("--ema", type=float, default=0.995)
ap.add_argument("--images", type=int, default=4000); ap.add_argument("--seed", type=int, default=0); ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
clip, tok = shapes_clip()
judge, judge_acc = real_judge()
train = make_shape_captions(args.images, "train", seed=1, image_size=S)
seen, held = seen_and_held()
assert set(seen) == {(list(COLOURS)[c], SHAPES[s]) for c, s in zip(train.colour, train.shape)}  # seen = what training draws
pixels, empty = to_pixels(train.images), encode_prompts(clip, tok, [""])
cond = lambda idx, rng: encode_prompts(clip, tok, [train.caption(i, args.drop, rng) for i in idx])
sched = NoiseSchedule.cosine(prediction_type="v")
seed_everything(args.seed)
unet = UNet(UNetConfig.tiny(context_dim=clip.cfg.text.d_model))
c0 = time.process_time()
hist = train_diffusion(unet, sched, pixels, cond, steps=args.steps, batch_size=args.batch, lr=args.lr, empty=empty, ema_decay=args.ema,
                       snr_gamma=args.snr_gamma, seed=args.seed)
train_cpu = time.process_time() - c0
val_seen, val_held = prompt_set(seen, 9), prompt_set(held, 3)  # 108 and 36 validation samples
val = {}
for scale in (1.0, 1.5, 2.0, 3.0):
    for name, (p, l) in (("seen", val_seen), ("held-out", val_held)):
        hits = prompt_match(judge, text_to_images(unet, sched, clip, tok, p, scale, 20, 1000), l)
        val[f"{name} scale {scale}"] = {k: float(v.mean()) for k, v in hits.items()}
res = dict(args=vars(args), judge_accuracy=judge_acc, train_cpu_s=train_cpu, last_loss=hist.last("loss"), validation=val)
harness.record(__file__, f"quick_recipe_{args.name}", res)
print(json.dumps(res, indent=1))

rows = []
for f in sorted(harness.lesson_dir(__file__).glob("quick_recipe_*.json")):
    r = json.loads(f.read_text())["results"]; a = r["args"]
    cells = " | ".join(f"{r['validation'][f'seen scale {s}']['match']:.1%}" for s in (1.0, 1.5, 2.0, 3.0))
    held_best = max(r["validation"][f"held-out scale {s}"]["match"] for s in (1.0, 1.5, 2.0, 3.0))
    rows.append(f"| {a['name']} | {a['steps']} | {a['batch']} | {a['lr']:g} | {a['drop']} | {a['snr_gamma']} | {a['ema']} | {a['seed']} | "
                f"{r['train_cpu_s']:.0f} | {cells} | {held_best:.1%} |")
harness.write_section(__file__, "quick_recipe", f"""## Quick-mode recipes, validation only (seeds 1000+, 20 DDIM steps)

{harness.machine_line()}

Share of samples whose colour and shape the judge reads as asked: 108 samples of the 12 seen combinations at each
guidance scale, and the best scale's share on 36 samples of the 12 held-out combinations. Training CPU time with one thread.

| recipe | steps | batch | lr | caption drop | min-SNR gamma | EMA | seed | train CPU s | seen 1.0 | seen 1.5 | seen 2.0 | seen 3.0 | held-out (best scale) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n")

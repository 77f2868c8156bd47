"""Lesson 09b, the slow run: the lesson's pipeline with longer training, the same figures as numbers.

Trains lesson 09's CLIP (cached), the judge, the pixel-space U-Net and the latent autoencoder + U-Net for `--steps`
steps each, chooses the guidance scale (at 20 DDIM steps), then the number of DDIM steps at that scale, on validation
seeds (1000+), as the lesson does, scores the test seeds (2000+) once,
and writes slow_run.json and a section of RESULTS.md.

Usage: nice -n 10 python bench/09b_diffusion/slow_run.py [--steps 3000] [--images 12000] [--threads 1]
"""
import argparse, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
from judge_setup import IMAGE_SIZE as S, real_judge, seen_and_held
from llmcourse.core import seed_everything
from llmcourse.clip import make_shape_captions, to_pixels
from llmcourse.diffusion import (NoiseSchedule, TinyAutoencoder, UNet, UNetConfig, encode_prompts, match_interval,
                                 prompt_match, prompt_set, shapes_clip, text_to_images, train_autoencoder, train_diffusion)

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=3000); ap.add_argument("--images", type=int, default=12000)
ap.add_argument("--threads", type=int, default=1); ap.add_argument("--prediction", default="v")
args = ap.parse_args()
torch.set_num_threads(args.threads)
clip, tok = shapes_clip()
judge, judge_acc = real_judge(12000, 1000)
train = make_shape_captions(args.images, "train", seed=1, image_size=S)
pixels = to_pixels(train.images)
empty = encode_prompts(clip, tok, [""])
cond = lambda idx, rng: encode_prompts(clip, tok, [train.caption(i, 0.5, rng) for i in idx])
sched = NoiseSchedule.cosine(prediction_type=args.prediction)
seen, held = seen_and_held()  # the 12 combinations drawn in training, the 12 never drawn

def fit(model, data):
    seed_everything(0); c0 = time.process_time()
    h = train_diffusion(model, sched, data, cond, steps=args.steps, empty=empty)
    return time.process_time() - c0, h.last("loss")

seed_everything(0)
unet = UNet(UNetConfig.tiny(context_dim=clip.cfg.text.d_model))
pixel_cpu, pixel_loss = fit(unet, pixels)
seed_everything(0)
ae = TinyAutoencoder(); train_autoencoder(ae, pixels, steps=3000)
with torch.no_grad(): latents = torch.cat([ae.encode(pixels[i:i + 1000]) for i in range(0, len(pixels), 1000)])
latent_unet = UNet(UNetConfig.tiny(image_size=8, in_channels=4, widths=(32, 64), context_dim=clip.cfg.text.d_model))
latent_cpu, latent_loss = fit(latent_unet, latents)

gen = {"pixel": lambda p, sc, n, seed: text_to_images(unet, sched, clip, tok, p, sc, n, seed),
       "latent": lambda p, sc, n, seed: text_to_images(latent_unet, sched, clip, tok, p, sc, n, seed, decode=ae.decode)}
# the lesson's order: the guidance scale at 20 DDIM steps first, then the number of steps at that scale
SCALES, STEPS = (1.0, 1.5, 2.0, 3.0, 5.0), (5, 10, 20, 50)
val_seen, val_held = prompt_set(seen, 9), prompt_set(held, 9)  # 108 and 108 validation samples
val = {f"{name} scale {sc}": float(prompt_match(judge, gen["pixel"](p, sc, 20, 1000), l)["match"].mean())
       for sc in SCALES for name, (p, l) in (("seen", val_seen), ("held-out", val_held))}
best_scale = max(SCALES, key=lambda sc: val[f"seen scale {sc}"])
val |= {f"seen steps {n}": (val[f"seen scale {best_scale}"] if n == 20 else
                            float(prompt_match(judge, gen["pixel"](val_seen[0], best_scale, n, 1000), val_seen[1])["match"].mean())) for n in STEPS}
best_steps = min(STEPS, key=lambda n: (-round(val[f"seen steps {n}"], 2), n))
test = {}
for space in ("pixel", "latent"):
    for name, combos, per in (("seen", seen, 18), ("held-out", held, 17)):  # 216 and 204 test samples
        p, l = prompt_set(combos, per)
        t0 = time.perf_counter(); images = gen[space](p, best_scale, best_steps, 2000); ms = 1000 * (time.perf_counter() - t0) / len(p)
        hits = prompt_match(judge, images, l)
        test[f"{space} {name}"] = dict(n=len(p), ms_per_sample=ms, **{k: match_interval(v) for k, v in hits.items()})
res = dict(steps=args.steps, images=args.images, prediction=args.prediction, judge_accuracy=judge_acc, pixel_train_cpu_s=pixel_cpu,
           latent_train_cpu_s=latent_cpu, pixel_loss=pixel_loss, latent_loss=latent_loss, validation=val,
           chosen=dict(scale=best_scale, steps=best_steps), test=test)
harness.record(__file__, "slow_run", res)
pct = lambda t: f"{t[0]:.1%} [{t[1]:.1%}, {t[2]:.1%}]"
rows = "\n".join(f"| {k} | {v['n']} | {pct(v['match'])} | {v['colour'][0]:.1%} | {v['shape'][0]:.1%} | {v['ms_per_sample']:.1f} |" for k, v in test.items())
vrows = " ".join(f"{k}: {v:.1%};" for k, v in val.items())
harness.write_section(__file__, "slow_run", f"""## Slow run: {args.steps} training steps on {args.images} images ({args.prediction} prediction)

{harness.machine_line()}

Judge accuracy on 1000 real images: {judge_acc:.1%}. Training CPU time: pixel U-Net {pixel_cpu:.0f} s, latent U-Net {latent_cpu:.0f} s.
Validation (seeds 1000+; 20 DDIM steps for the scales, then the steps at the chosen scale): {vrows}
Chosen on validation: guidance {best_scale}, {best_steps} DDIM steps. Test (seeds 2000+, scored once), 95% bootstrap intervals:

| space, combinations | samples | colour and shape match | colour | shape | ms per sample |
| --- | --- | --- | --- | --- | --- |
{rows}
""")
print(open(harness.lesson_dir(__file__)/"RESULTS.md").read())

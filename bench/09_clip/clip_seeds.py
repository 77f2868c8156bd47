"""Lesson 09: the quick-mode CLIP over seeds. Zero-shot top-1 on the validation combinations (every setting of the
lesson was chosen on them) and on the test combinations (never used for a choice), with the seen combinations and
retrieval beside them; the spread sets the margins of the lesson's checks.

    python bench/09_clip/clip_seeds.py --seeds 5      (about 30 s of CPU per seed, one thread)

The seeds run after every choice was frozen; they inform only the margins of the checks, not a setting.
"""
import argparse, inspect, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seeds", type=int, default=5)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()

import numpy as np
import torch
torch.set_num_threads(a.threads)
from llmcourse.core import seed_everything
from llmcourse.bert import bootstrap_accuracy
from llmcourse.clip import (CLIP, CLIPConfig, class_names, encode_images, encode_texts, make_shape_captions, recall_at_k,
                            shapes_tokenizer, to_pixels, train_clip, unique_caption_set, zero_shot_classifier,
                            zero_shot_predict)

N_TRAIN, N_EVAL = 6000, 600  # as the lesson's quick mode
tok = shapes_tokenizer()
rows = []
for seed in range(a.seeds):
    train = make_shape_captions(N_TRAIN, "train", seed=100 + seed)
    seed_everything(seed)
    model = CLIP(CLIPConfig.tiny(tok))
    c0 = time.process_time()
    train_clip(model, train, tok, seed=seed)
    cpu = time.process_time() - c0
    classifier = zero_shot_classifier(model, tok, class_names())
    row = dict(seed=seed, train_cpu_seconds=round(cpu, 1))
    for split, offset in (("heldout", 200), ("test", 400), ("train", 300)):
        data = make_shape_captions(N_EVAL, split, seed=offset + seed)
        _, pred = zero_shot_predict(model, to_pixels(data.images), classifier)
        acc, lo, hi = bootstrap_accuracy(pred == torch.as_tensor(data.labels))
        row[split] = dict(top1=round(acc, 4), interval=[round(lo, 4), round(hi, 4)])
    pairs = unique_caption_set(seed=500 + seed)
    sim = encode_images(model, to_pixels(pairs.images)) @ encode_texts(model, tok, pairs.captions).T
    row["i2t_r1"], row["t2i_r1"] = round(recall_at_k(sim)[1], 4), round(recall_at_k(sim.T)[1], 4)
    rows.append(row)
    print(row, flush=True)

def stats(key):
    v = np.array([r[key]["top1"] for r in rows])
    return dict(mean=round(v.mean(), 4), sd=round(v.std(ddof=1), 4) if len(v) > 1 else 0.0, min=round(v.min(), 4), max=round(v.max(), 4))
summary = {k: stats(k) for k in ("heldout", "test", "train")}
COMMIT = harness.commit()  # before record() rewrites the tracked JSON, which would read as -dirty
harness.record(__file__, "clip_seeds", dict(runs=rows, summary=summary, n_train=N_TRAIN, n_eval=N_EVAL))
DEFAULTS = {k: v.default for k, v in inspect.signature(train_clip).parameters.items()}
fmt = lambda d: f"{d['top1']:.1%} ({d['interval'][0]:.1%}-{d['interval'][1]:.1%})"
table = "\n".join(f"| {r['seed']} | {fmt(r['heldout'])} | {fmt(r['test'])} | {r['train']['top1']:.1%} | {r['i2t_r1']:.3f} | {r['t2i_r1']:.3f} | {r['train_cpu_seconds']:.0f} |" for r in rows)
line = lambda k: f"mean {summary[k]['mean']:.1%}, sd {summary[k]['sd']:.1%}, range {summary[k]['min']:.1%} to {summary[k]['max']:.1%}"
harness.write_section(__file__, "clip_seeds", f"""## The quick-mode CLIP over seeds

`{harness.command()}` at commit {COMMIT}; {harness.machine_line()}.

{N_TRAIN} training pairs of the 12 seen combinations, {DEFAULTS['steps']} steps of {DEFAULTS['batch_size']} (`train_clip` defaults); zero-shot top-1 over the
24 classes on {N_EVAL} new images per set, with 95% bootstrap intervals over the images. Every seed draws its own
training images, model and batches. Validation combinations: every setting of the lesson was chosen on them. Test
combinations: never used for a choice.

| seed | validation top-1 | test top-1 | seen top-1 | image->text R@1 | text->image R@1 | train CPU s |
|---|---|---|---|---|---|---|
{table}

Validation: {line('heldout')}. Test: {line('test')}. Seen: {line('train')}.""")

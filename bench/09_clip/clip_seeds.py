"""Lesson 09: how robust is the quick-mode result? Train the tiny CLIP of the lesson with several seeds (model init,
batches and images) and report held-out zero-shot top-1, retrieval recall and the CPU time of training (1 thread).

Usage: python bench/clip_seeds.py [n_seeds]   (about 30 s of CPU per seed)
"""
import sys, time
import numpy as np
import torch
from llmcourse.core import seed_everything
from llmcourse.clip import (CLIP, CLIPConfig, class_names, encode_images, encode_texts, make_shape_captions, recall_at_k,
                            shapes_tokenizer, to_pixels, train_clip, unique_caption_set, zero_shot_classifier,
                            zero_shot_predict)

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
tok = shapes_tokenizer()
rows = []
for seed in range(n):
    train = make_shape_captions(6000, "train", seed=100 + seed)
    held = make_shape_captions(600, "heldout", seed=200 + seed)
    seed_everything(seed)
    model = CLIP(CLIPConfig.tiny(tok))
    c0, t0 = time.process_time(), time.perf_counter()
    train_clip(model, train, tok, seed=seed)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    _, pred = zero_shot_predict(model, to_pixels(held.images), zero_shot_classifier(model, tok, class_names()))
    top1 = (pred == torch.as_tensor(held.labels)).float().mean().item()
    pairs = unique_caption_set(seed=300 + seed)
    sim = encode_images(model, to_pixels(pairs.images)) @ encode_texts(model, tok, pairs.captions).T
    i2t, t2i = recall_at_k(sim), recall_at_k(sim.T)
    rows.append((seed, top1, i2t[1], i2t[5], t2i[1], t2i[5], cpu, wall))
    print(f"seed {seed}: zero-shot held-out top-1 {top1:.3f}  i2t R@1 {i2t[1]:.3f} R@5 {i2t[5]:.3f}  "
          f"t2i R@1 {t2i[1]:.3f} R@5 {t2i[5]:.3f}  train CPU {cpu:.1f} s, wall {wall:.1f} s", flush=True)
a = np.array(rows)
print(f"mean over {n} seeds: top-1 {a[:, 1].mean():.3f} (min {a[:, 1].min():.3f}), i2t R@1 {a[:, 2].mean():.3f}, "
      f"t2i R@1 {a[:, 4].mean():.3f}, train CPU {a[:, 6].mean():.1f} s")

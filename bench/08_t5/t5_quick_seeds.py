"""Lesson 08: the quick run (300 steps) over seeds, which sets the margins of the lesson's quick checks: how far the
training loss falls (the mean of the last 20 steps over the first 20) and the validation exact match of `sort`.

    python bench/08_t5/t5_quick_seeds.py --seeds 4      (about a minute of CPU per seed)
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seeds", type=int, default=4)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()

import numpy as np
import torch
torch.set_num_threads(a.threads)
from llmcourse.core import seed_everything
from llmcourse.t5 import (GENERATED_TASKS, T5Size, build_t5, generated_examples, mixing_rates, sst2_examples, train_t5,
                          train_t5_tokenizer)

TASKS = tuple(GENERATED_TASKS)
sst_train, gen_train = sst2_examples("train"), generated_examples(20_000)
tok = train_t5_tokenizer([t for _, i, o in sst_train + gen_train[::10] for t in (i, o)], vocab_size=1000, extra_ids=20)
train_by_task = {t: [e for e in gen_train if e[0] == t] for t in TASKS} | {"sst2": sst_train}
rates = mixing_rates({t: len(v) for t, v in train_by_task.items()}, limit=20_000)
valid = generated_examples(200, "heldout") + sst2_examples("dev", 200)
rows = []
for seed in range(a.seeds):
    seed_everything(seed)
    model = build_t5(T5Size.tiny(), tok, seed=seed)
    c0 = time.process_time()
    h = train_t5(model, tok, train_by_task, rates, valid, steps=300, lr=3e-3, warmup=100, eval_every=150, seed=seed)
    losses = h.series("loss")[1]
    row = dict(seed=seed, loss_ratio=round(float(np.mean(losses[-20:]) / np.mean(losses[:20])), 4),
               **{f"em_{t}": round(h.last(f"em_{t}"), 4) for t in (*TASKS, "sst2")}, cpu_seconds=round(time.process_time() - c0, 1))
    rows.append(row); print(row, flush=True)
keys = ["loss_ratio", *(f"em_{t}" for t in (*TASKS, "sst2"))]
summary = {k: dict(mean=round(float(np.mean([r[k] for r in rows])), 4), min=min(r[k] for r in rows), max=max(r[k] for r in rows)) for k in keys}
COMMIT = harness.commit()  # before record() rewrites the tracked JSON, which would read as -dirty
harness.record(__file__, "t5_quick_seeds", dict(runs=rows, summary=summary))
table = "\n".join("| " + " | ".join([str(r["seed"])] + [f"{r[k]:.3f}" for k in keys] + [f"{r['cpu_seconds']:.0f}"]) + " |" for r in rows)
harness.write_section(__file__, "t5_quick_seeds", f"""## The quick run over seeds (the margins of the lesson's quick checks)

`{harness.command()}` at commit {COMMIT}; {harness.machine_line()}.

300 steps of 64, peak lr 3e-3, 100 warm-up steps, equal shares (K = 20,000); each seed draws the initial weights and the
batches. Loss ratio: mean training loss of the last 20 steps over the first 20. Exact match on the validation examples.

| seed | loss ratio | reverse | sort | add | SST-2 | CPU s |
|---|---|---|---|---|---|---|
{table}

Loss ratio {summary['loss_ratio']['min']:.3f} to {summary['loss_ratio']['max']:.3f}; sort {summary['em_sort']['min']:.3f} to {summary['em_sort']['max']:.3f}.""")

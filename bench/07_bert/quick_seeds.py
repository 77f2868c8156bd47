"""Lesson 07: the quick-mode runs over seeds, which set the margins of the lesson's checks.

    python bench/07_bert/quick_seeds.py --seeds 5

Per seed: the two masked-LM runs (static and dynamic masking, 500 sentences, 150 steps of 32; how far the validation
loss falls, and how much wider static masking's train/validation gap is), and the SST-2 quick fine-tuning of MiniLM
(1,024 training sentences drawn with the seed, 64 steps of 16, embeddings frozen, the lesson's fixed 200 dev sentences)
with the plain loop and with `transformers.Trainer`. Writes quick_seeds.json and a RESULTS.md section.
"""
import argparse, sys, time
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
import transformers
transformers.logging.set_verbosity_error()
from llmcourse.core import seed_everything
from llmcourse.data import load_sst2, minilm_dir
from llmcourse.tokenizers import train_wordpiece
from llmcourse.bert import (BertConfig, BertForMaskedLM, DynamicMaskingCollator, StaticMaskingCollator, accuracy,
                            finetune_classifier, minilm_classifier, train_mlm, trainer_finetune)

sst_train, sst_dev = load_sst2("train"), load_sst2("dev")
texts = sst_train.sentence.tolist()
wp = train_wordpiece(texts, vocab_size=2000)
pre = wp(texts[:500], truncation=True, max_length=48)["input_ids"]
valid = DynamicMaskingCollator(wp, seed=123)(wp(sst_dev.sentence.tolist()[:256], truncation=True, max_length=48)["input_ids"])
mlm_cfg = BertConfig.tiny(vocab_size=len(wp), max_positions=48, d_model=64, d_ff=256)
tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
dev_sub = sst_dev.sample(200, random_state=0)  # the lesson's quick dev sentences, the same for every seed
rows = []
for seed in range(a.seeds):
    c0 = time.process_time()
    row = dict(seed=seed)
    gaps = {}
    for name, coll in [("static", StaticMaskingCollator(wp, dupe_factor=2, seed=seed + 1)), ("dynamic", DynamicMaskingCollator(wp, seed=seed + 1))]:
        seed_everything(seed)
        h = train_mlm(BertForMaskedLM(mlm_cfg), pre, coll, valid, steps=150, batch_size=32, lr=2e-3, warmup=15, eval_every=25, seed=seed)
        row[f"mlm_{name}_drop"] = round(h.series("valid_loss")[1][0] - h.last("valid_loss"), 4)
        gaps[name] = h.last("valid_loss") - sum(h.series("loss")[1][-25:]) / 25
    row["mlm_gap_difference"] = round(gaps["static"] - gaps["dynamic"], 4)
    sub = sst_train.sample(1024, random_state=seed)
    clf = minilm_classifier(pooling="mean", seed=seed)
    clf.bert.embeddings.word.weight.requires_grad_(False)
    row["sst2_before"] = round(accuracy(clf, tok, dev_sub), 4)
    row["sst2_plain"] = round(finetune_classifier(clf, tok, sub, dev_sub, epochs=1, batch_size=16, lr=2e-4, seed=seed).last("valid_acc"), 4)
    clf_t = minilm_classifier(pooling="mean", seed=seed)
    clf_t.bert.embeddings.word.weight.requires_grad_(False)
    trainer_finetune(clf_t, tok, sub, epochs=1, batch_size=16, lr=2e-4, seed=seed)
    row["sst2_trainer"] = round(accuracy(clf_t, tok, dev_sub), 4)
    row["cpu_seconds"] = round(time.process_time() - c0, 1)
    rows.append(row)
    print(row, flush=True)

keys = ["mlm_static_drop", "mlm_dynamic_drop", "mlm_gap_difference", "sst2_before", "sst2_plain", "sst2_trainer"]
summary = {k: dict(mean=round(float(np.mean([r[k] for r in rows])), 4), sd=round(float(np.std([r[k] for r in rows], ddof=1)), 4),
                   min=min(r[k] for r in rows), max=max(r[k] for r in rows)) for k in keys}
COMMIT = harness.commit()  # before record() rewrites the tracked JSON, which would read as -dirty
harness.record(__file__, "quick_seeds", dict(runs=rows, summary=summary))
table = "\n".join("| " + " | ".join([str(r["seed"])] + [f"{r[k]:.3f}" for k in keys] + [f"{r['cpu_seconds']:.0f}"]) + " |" for r in rows)
stat = "\n".join(f"| {k} | {s['mean']:.3f} | {s['sd']:.3f} | {s['min']:.3f} | {s['max']:.3f} |" for k, s in summary.items())
harness.write_section(__file__, "quick_seeds", f"""## The quick runs over seeds (the margins of the lesson's checks)

`{harness.command()}` at commit {COMMIT}; {harness.machine_line()}.

Masked LM: validation-loss drop from the untrained model (static, dynamic masking) and how much wider static masking's
train/validation gap is than dynamic masking's. SST-2: dev accuracy on the lesson's 200 quick dev sentences before
and after 64 steps (plain loop, `transformers.Trainer`). Each seed draws the training sentences, the new classifier,
the masks and the order.

| seed | MLM drop, static | MLM drop, dynamic | gap difference | SST-2 before | SST-2 plain loop | SST-2 Trainer | CPU s |
|---|---|---|---|---|---|---|---|
{table}

| quantity | mean | sd | min | max |
|---|---|---|---|---|
{stat}""")

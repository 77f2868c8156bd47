"""Lesson 07's slow run: fine-tune the real all-MiniLM-L6-v2 on SST-2 with `finetune_classifier`, report dev accuracy.

    LLMCOURSE_MIRROR=../shared/data python bench/bert_sst2.py --n-train 12000 --eval-every 0 --threads 1
"""
import argparse, json, os, time
from pathlib import Path

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--n-train", type=int, default=12000, help="training sentences drawn from SST-2 train (0 = all 67,349)")
p.add_argument("--epochs", type=float, default=1.0)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--pooling", default="mean", choices=["mean", "cls"])
p.add_argument("--max-length", type=int, default=64)
p.add_argument("--eval-every", type=int, default=200)
p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
p.add_argument("--out", default=str(Path(__file__).with_name("bert_sst2.json")))
a = p.parse_args()

import torch
torch.set_num_threads(a.threads)
import transformers
from llmcourse.core import default_device
from llmcourse.data import load_sst2, minilm_dir
from llmcourse.bert import minilm_classifier, finetune_classifier

dev = default_device()
tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
train, valid = load_sst2("train"), load_sst2("dev")
if a.n_train: train = train.sample(a.n_train, random_state=0)
clf = minilm_classifier(pooling=a.pooling).to(dev)
t0 = time.time()
h = finetune_classifier(clf, tok, train, valid, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                        max_length=a.max_length, eval_every=a.eval_every)
secs = time.time() - t0
res = dict(vars(a), device=str(dev), train_sentences=len(train), steps=len(h.series("loss")[0]),
           seconds=round(secs, 1), dev_accuracy=h.last("valid_acc"),
           valid_acc_curve=list(zip(*h.series("valid_acc"))))
print(json.dumps(res, indent=1))
Path(a.out).write_text(json.dumps(res, indent=1) + "\n")

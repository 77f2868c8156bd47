"""Lesson 09c: does starting the tagger from a pre-trained BERT (as LayoutLM started from bert-base-uncased) lift its
entity F1 within quick mode's CPU budget? Scored on the lesson's 8 validation templates only (its test templates are
generated, as in the lesson, but never encoded or scored here).

Variants, seed 0, the lesson's data (800 training templates x 3 invoices, 8 validation templates x 12):
- from scratch: the lesson's tiny LayoutLM (2 blocks, 64 wide), 600 steps of 16 at peak lr 5e-3;
- from MiniLM: `layoutlm_from_bert(bert_from_pretrained(minilm_dir()), n_layers=k)` (384 wide, bert-base-uncased's
  vocabulary), its token table frozen (the other parameters all train), batches of 4 at peak lr 1e-3, no dropout;
  the steps for k = 2, 3, 6 blocks are set so that each run costs about as much CPU as the from-scratch one
  (a step of 16 pages costs about 0.9, 1.3 and 2.7 CPU s for k = 2, 3, 6 on one thread, against about 0.07 for the
  tiny model); the box tables start small (`layoutlm_from_bert`'s default box_scale; h and w start at zero) so that the
  model starts close to MiniLM;
- with layout and text only (`use_layout=False`) on the same pieces, batches and seed, for the tiny model and k = 2.

Usage: python bench/09c_layoutlm/layoutlm_init.py   (about 10 minutes of CPU on an idle core, 1 thread)
"""
import sys, time
import torch
from llmcourse.core import seed_everything
from llmcourse.data import minilm_dir
from llmcourse.bert import bert_from_pretrained
from llmcourse.layoutlm import (BOX_SCALE_FROM_BERT, LayoutLMConfig, LayoutLMTagger, entity_f1, init_box_tables, layoutlm_from_bert, predict_tags,
                                train_tagger, word_tags)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line
from lesson_data import lesson_data, per_field

torch.set_num_threads(1)
tok, enc = lesson_data()  # the lesson's data; its test templates are never encoded here
true = [word_tags(e) for e in enc["valid"]]
minilm = bert_from_pretrained(minilm_dir())


def run(name, init, layout=True, k=None, steps=600, batch_size=16, lr=5e-3, eval_every=100, box_scale=None):
    seed_everything(0)
    if init == "scratch": m = init_box_tables(LayoutLMTagger(LayoutLMConfig.tiny(dropout=0.0, attn_dropout=0.0), use_layout=layout))
    else:
        m = layoutlm_from_bert(minilm, n_layers=k, use_layout=layout, dropout=0.0, attn_dropout=0.0, **({} if box_scale is None else dict(box_scale=box_scale)))
        m.layoutlm.bert.embeddings.word.weight.requires_grad_(False)  # the token table stays as MiniLM learned it
    c0 = time.process_time()
    m, h = train_tagger(m, enc["train"], enc["valid"], steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every, seed=0)
    pred = predict_tags(m, enc["valid"])
    row = dict(variant=name, init=init, n_layers=k, layout=layout, steps=steps, batch_size=batch_size, lr=lr, box_scale=None if init == "scratch" else box_scale or BOX_SCALE_FROM_BERT,
               valid_f1=entity_f1(true, pred), valid_curve=h.series("valid_f1")[1], per_field=per_field(true, pred),
               cpu_s=time.process_time() - c0)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row

mini = dict(init="minilm", batch_size=4, lr=1e-3)
rows = [run("from scratch (tiny, 2 blocks x 64)", "scratch"), run("from scratch, text only", "scratch", layout=False),
        run("MiniLM, 2 blocks", k=2, steps=240, eval_every=40, **mini),
        run("MiniLM, 2 blocks, text only", k=2, steps=240, eval_every=40, layout=False, **mini),
        run("MiniLM, 3 blocks", k=3, steps=160, eval_every=40, **mini),
        run("MiniLM, 6 blocks", k=6, steps=80, eval_every=20, **mini)]
record(__file__, "layoutlm_init", dict(rows=rows))
lines = [f"Starting from scratch or from MiniLM (all-MiniLM-L6-v2 cut to its first k blocks), scored on the lesson's 8 "
         f"validation templates (96 invoices; test templates not scored); seed 0; {machine_line()}.", "",
         "| variant | steps x pages | peak lr | validation entity F1 (best step) | INVOICE_NO | DATE | TOTAL | train CPU s |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
for r in rows:
    pf = r["per_field"]
    lines.append(f"| {r['variant']} | {r['steps']} x {r['batch_size']} | {r['lr']:g} | {r['valid_f1']:.3f} | {pf['INVOICE_NO']:.3f} | "
                 f"{pf['DATE']:.3f} | {pf['TOTAL']:.3f} | {r['cpu_s']:.0f} |")
best = max(rows, key=lambda r: r["valid_f1"] if r["layout"] else -1)
lines += ["", f"Best with layout on validation: {best['variant']} ({best['valid_f1']:.3f}). The MiniLM token table is frozen; "
          "every other parameter trains. CPU seconds include the validation passes."]
write_section(__file__, "layoutlm_init", "\n".join(lines))

"""Lesson 09c: the 2-D bias tagger at 2,400 steps, one seed or an ensemble of seeds chosen on the validation templates,
then scored once on a fresh draw of held-out templates.

Why a fresh draw: the lesson's own 8 test templates have been scored by the single-seed runs of `layoutlm_bias_test.py`
(0.937 and 0.947 against a target of 0.95), so a choice made after that (here: whether to average seeds) must be
scored on templates that no run has seen. `make_templates(8, seed=2024)` draws 8 new layouts from the same generator
(the lesson's templates come from `make_templates(816, seed=1)`); 12 invoices each, through `ocr_noise`, as the
lesson makes its held-out pages.

Candidates, each scored on the lesson's 8 validation templates: seed 0, 1 or 2 alone, the average of the word-piece
probabilities of seeds 0-1, and of seeds 0-2 (each model is the step with its best validation F1, as `train_tagger`
keeps it). The candidate with the highest validation F1 is chosen (a tie goes to fewer models); then the fresh
templates are scored once, with the text-only twin (seed 0) beside it.

Usage: nice -n 10 python bench/09c_layoutlm/layoutlm_ensemble.py    (about 25 CPU minutes, one thread)
"""
import sys, time
from pathlib import Path
import numpy as np
import torch
from llmcourse.core import seed_everything
from llmcourse.invoices import make_documents, make_templates, ocr_noise
from llmcourse.layoutlm import (LABELS, LayoutLMConfig, LayoutLMTagger, bootstrap_f1, collate, encode_document, entity_counts, entity_f1,
                                init_box_tables, train_tagger, word_tags)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line
from lesson_data import lesson_data, per_field

NAME, STEPS, TARGET, FRESH_SEED = "layoutlm_ensemble", 2400, 0.95, 2024

@torch.no_grad()
def probs(model, encoded, batch_size=32):
    "Per document, the (pieces, labels) softmax of `model` over its word pieces."
    model.eval(); out = []
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i:i + batch_size]; b = collate(chunk)
        p = model(b["input_ids"], b["bbox"], b["attention_mask"]).softmax(-1)  # (B, T, L)
        out += [p[j, :len(e["input_ids"])] for j, e in enumerate(chunk)]
    return out

def tags(prob_sets, encoded):
    "The tag of every word (its first piece) under the mean of several models' probabilities."
    return [[LABELS[int(k)] for k in torch.stack(ps).mean(0).argmax(-1)[torch.tensor(e["first"])]] for ps, e in zip(zip(*prob_sets), encoded)]

def train(seed, spatial, enc):
    seed_everything(seed); c0 = time.process_time()
    m = init_box_tables(LayoutLMTagger(LayoutLMConfig.tiny(dropout=0.0, attn_dropout=0.0, spatial_bias=spatial), use_layout=False))
    m, h = train_tagger(m, enc["train"], enc["valid"], steps=STEPS, lr=5e-3, seed=seed)
    print(f"{'2-D bias' if spatial else 'text only'} seed {seed}: best validation F1 {h.best('valid_f1', 'max'):.3f}, {time.process_time() - c0:.0f} CPU s", flush=True)
    return m, time.process_time() - c0

def main():
    torch.set_num_threads(1)
    tok, enc = lesson_data(1)
    rng = np.random.default_rng(FRESH_SEED)
    fresh_docs = [ocr_noise(d, rng) for d in make_documents(make_templates(8, seed=FRESH_SEED), 12, seed=FRESH_SEED)]
    true_valid = [word_tags(e) for e in enc["valid"]]
    models, cpu = {}, {}
    for seed in (0, 1, 2): models[seed], cpu[seed] = train(seed, True, enc)
    valid_p = {s: probs(m, enc["valid"]) for s, m in models.items()}
    candidates = {"seed 0": (0,), "seed 1": (1,), "seed 2": (2,), "seeds 0-1": (0, 1), "seeds 0-2": (0, 1, 2)}
    valid_f1 = {name: entity_f1(true_valid, tags([valid_p[s] for s in seeds], enc["valid"])) for name, seeds in candidates.items()}
    for name, f in valid_f1.items(): print(f"validation {name}: {f:.3f}", flush=True)
    chosen = max(candidates, key=lambda n: (valid_f1[n], -len(candidates[n])))
    print(f"chosen on validation: {chosen}", flush=True)
    # the choice is frozen; now the fresh templates, once
    fresh = [encode_document(tok, d) for d in fresh_docs]
    true_fresh = [word_tags(e) for e in fresh]
    pred = tags([probs(models[s], fresh) for s in candidates[chosen]], fresh)
    f1, lo, hi = bootstrap_f1(entity_counts(true_fresh, pred))
    text, text_cpu = train(0, False, enc)
    t_pred = tags([probs(text, fresh)], fresh)
    tf1, tlo, thi = bootstrap_f1(entity_counts(true_fresh, t_pred))
    res = dict(steps=STEPS, fresh_seed=FRESH_SEED, fresh_docs=len(fresh), valid_f1=valid_f1, chosen=chosen, train_cpu_s=cpu, text_cpu_s=text_cpu,
               fresh=dict(f1=f1, low=lo, high=hi, per_field=per_field(true_fresh, pred)),
               fresh_text_only=dict(f1=tf1, low=tlo, high=thi, per_field=per_field(true_fresh, t_pred)))
    print(res, flush=True)
    record(__file__, NAME, res)
    L = [f"The 2-D bias tagger at {STEPS:,} steps (the lesson's data and recipe), one seed or an average of seeds chosen on the lesson's 8 validation "
         f"templates, then {len(fresh)} invoices of 8 fresh held-out templates (`make_templates(8, seed={FRESH_SEED})`) scored once; {machine_line()}.", "",
         "| candidate | validation entity F1 |", "| --- | --- |"] + [f"| {n} | {f:.3f} |" for n, f in valid_f1.items()]
    L += ["", f"Chosen: {chosen}. Fresh templates, scored once: **{f1:.3f} [{lo:.3f}, {hi:.3f}]** (95% bootstrap over invoices; "
          + ", ".join(f"{k} {v:.3f}" for k, v in res["fresh"]["per_field"].items()) + f"); the text-only twin (seed 0) {tf1:.3f} [{tlo:.3f}, {thi:.3f}]. "
          f"Target F1 >= {TARGET}: " + ("met." if f1 >= TARGET else "missed.")]
    write_section(__file__, NAME, "\n".join(L))

if __name__ == "__main__": main()

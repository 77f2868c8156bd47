"""Lesson 09c: how much does the quick-mode result move with the seed? Run the lesson's recipe (data sizes, tiny
LayoutLM, 600 steps at 5e-3, no dropout, sinusoid-initialised box tables) on fresh template draws and report the
best validation F1 and the held-out F1 (with a bootstrap interval) of the tagger with layout and without it, plus the
CPU time of training (1 thread). The template seeds here (10, 11, ...) are not the lesson's (1), so its test
templates stay unseen.

Usage: python bench/09c_layoutlm/layoutlm_seeds.py [n_seeds]   (about 2-3 minutes of CPU per seed on an idle core)
"""
import sys, time
import numpy as np
import torch
import transformers
from llmcourse.core import seed_everything
from llmcourse.data import minilm_dir
from llmcourse.invoices import make_documents, make_templates, ocr_noise, split_templates
from llmcourse.layoutlm import (LayoutLMConfig, LayoutLMTagger, bootstrap_f1, encode_document, entity_counts, init_box_tables,
                                predict_tags, train_tagger, word_tags)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line

torch.set_num_threads(1)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
rows = []
for seed in range(n):
    split = split_templates(make_templates(816, seed=10 + seed), n_valid=8, n_test=8)
    rng = np.random.default_rng(10 + seed)
    docs = {k: [ocr_noise(d, rng) for d in make_documents(v, 3 if k == "train" else 12, seed=100 * seed + i)] for i, (k, v) in enumerate(split.items())}
    enc = {k: [encode_document(tok, d) for d in v] for k, v in docs.items()}
    truth = [word_tags(e) for e in enc["test"]]
    row = dict(seed=seed)
    for name, use in (("layout", True), ("text", False)):
        seed_everything(seed)
        m = init_box_tables(LayoutLMTagger(LayoutLMConfig.tiny(dropout=0.0, attn_dropout=0.0), use_layout=use))
        c0 = time.process_time()
        m, h = train_tagger(m, enc["train"], enc["valid"], steps=600, lr=5e-3, seed=seed)
        f1, lo, hi = bootstrap_f1(entity_counts(truth, predict_tags(m, enc["test"])))
        row |= {f"{name}_valid": h.best("valid_f1", "max"), f"{name}_heldout": f1, f"{name}_low": lo, f"{name}_high": hi,
                f"{name}_cpu_s": time.process_time() - c0}
    rows.append(row)
    print(row, flush=True)
record(__file__, "layoutlm_seeds", dict(rows=rows))
a = lambda k: np.array([r[k] for r in rows])
lines = [f"Recipe of lesson 09c over {n} template draws (seeds 10..{9 + n}); {machine_line()}.", "",
         "| model | best validation F1 (mean, min-max) | held-out F1 (mean, min-max) | train CPU s |", "| --- | --- | --- | --- |"]
for name in ("layout", "text"):
    v, t, c = a(f"{name}_valid"), a(f"{name}_heldout"), a(f"{name}_cpu_s")
    lines.append(f"| {name} | {v.mean():.3f} ({v.min():.3f}-{v.max():.3f}) | {t.mean():.3f} ({t.min():.3f}-{t.max():.3f}) | {c.mean():.0f} |")
write_section(__file__, "layoutlm_seeds", "\n".join(lines))

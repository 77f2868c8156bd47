"""The slow ULMFiT run of lesson 04 (`ULMFiTConfig.small()`), split in parts that can run as separate processes.

    python bench/bench_ulmfit.py main   # stage 1, stage 2, the ULMFiT classifier (writes the encoder the others use)
    python bench/bench_ulmfit.py a      # ablation (a): the same classifier on a random encoder
    python bench/bench_ulmfit.py b      # ablation (b): pretrained encoder, no gradual unfreezing (waits for `main`)
Each part writes bench/ulmfit_<part>.json; `python bench/bench_ulmfit.py report` prints the table.
Single-process equivalent: `ulmfit(ULMFiTConfig.small(), ablation=True)` (the notebook's slow cell).
"""
import json, os, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(int(os.environ.get("THREADS", 1)))
from llmcourse.core import cache_dir
from llmcourse.ulmfit import (ULMFiTConfig, pretrain_general_lm, finetune_target_lm, sst2_frame, sst2_sentences,
                              lm_dataloaders, classifier_dataloaders, train_classifier, accuracy_on)
from llmcourse.data import load_sst2

part = sys.argv[1] if len(sys.argv) > 1 else "main"
here = Path(__file__).parent
cfg = ULMFiTConfig.small()
path = cache_dir("ulmfit", "bench")
if part == "report":
    for p in ["main", "a", "b"]:
        f = here/f"ulmfit_{p}.json"
        if f.exists(): print(p, f.read_text())
    sys.exit()
t0 = time.perf_counter(); m = dict(part=part, config=cfg.__dict__, threads=torch.get_num_threads())
train, dev, test = sst2_frame("train", cfg.n_train, cfg.seed), sst2_frame("dev", cfg.n_eval, cfg.seed), sst2_frame("test", cfg.n_eval, cfg.seed)
if part == "main":
    g = pretrain_general_lm(cfg, path=path); m["general_lm_ppl"] = float(g.recorder.values[-1][-1]); m["stage1_s"] = time.perf_counter() - t0
    print("stage 1", m["general_lm_ppl"], m["stage1_s"], flush=True)
    t = time.perf_counter(); lm = finetune_target_lm(cfg, start="general_lm", path=path)
    m["target_lm_ppl"] = float(lm.recorder.values[-1][-1]); m["stage2_s"] = time.perf_counter() - t; vocab = lm.dls.vocab
    print("stage 2", m["target_lm_ppl"], m["stage2_s"], flush=True)
    m["lm_history"] = lm.history.rows[-50:]
else:
    texts = sst2_sentences(load_sst2("train").sentence)
    vocab = lm_dataloaders(texts, cfg, path=path).vocab
t = time.perf_counter()
dls = classifier_dataloaders(train, dev, vocab, cfg, path=path)
if part == "b":
    while not (path/"models"/"stage2_done").exists(): time.sleep(10) # `main` writes it once the encoder is saved
    t = time.perf_counter()
if part == "main": (path/"models"/"stage2_done").touch()
kw = dict(main=dict(), a=dict(encoder=None), b=dict(gradual=False))[part]
learn = train_classifier(dls, cfg, **kw)
m.update(dev_accuracy=accuracy_on(learn, dev), test_accuracy=accuracy_on(learn, test), stage3_s=time.perf_counter() - t,
         total_s=time.perf_counter() - t0, epochs=[r for r in learn.history.rows if "accuracy" in r])
(here/f"ulmfit_{part}.json").write_text(json.dumps(m, indent=1, default=str))
print(json.dumps({k: v for k, v in m.items() if k not in ("config", "epochs", "lm_history")}, indent=1))

"""Stage 3 of the slow ULMFiT run again, with changes to `ULMFiTConfig.small()`, on the encoder `bench_ulmfit.py main` cached.

    python bench/ulmfit_tune.py '{"n_train": 40000}' name ['{"encoder": null}' | '{"gradual": false}']
The first argument overrides fields of `ULMFiTConfig.small()`; the third is passed to `train_classifier` (ablations).
Writes bench/ulmfit_tune_<name>.json.
"""
import json, os, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from llmcourse.core import cache_dir
from llmcourse.ulmfit import (ULMFiTConfig, sst2_frame, sst2_sentences, lm_dataloaders, classifier_dataloaders, train_classifier, accuracy_on)
from llmcourse.data import load_sst2
over = json.loads(sys.argv[1]); name = sys.argv[2]; kw = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
cfg = ULMFiTConfig.small(**over)
path = cache_dir("ulmfit", "bench")
t0 = time.perf_counter()
train, dev, test = sst2_frame("train", cfg.n_train, cfg.seed), sst2_frame("dev", cfg.n_eval, cfg.seed), sst2_frame("test", cfg.n_eval, cfg.seed)
vocab = lm_dataloaders(sst2_sentences(load_sst2("train").sentence), cfg, path=path).vocab
dls = classifier_dataloaders(train, dev, vocab, cfg, path=path)
learn = train_classifier(dls, cfg, **kw)
m = dict(name=name, over=over, kw=kw, threads=torch.get_num_threads(), dev=accuracy_on(learn, dev), test=accuracy_on(learn, test), s=time.perf_counter()-t0,
         epochs=[r for r in learn.history.rows if "accuracy" in r])
open(Path(__file__).parent/f"ulmfit_tune_{name}.json", "w").write(json.dumps(m, default=str))
print(name, m["dev"], m["test"], m["s"])

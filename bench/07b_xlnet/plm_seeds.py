"""Lesson 07b: the spread of the quick permutation-LM run over seeds, which sets the margin of the lesson's check.

    python bench/07b_xlnet/plm_seeds.py --seeds 5

Trains the lesson's quick-mode XLNet (2 layers, width 64, 600 steps of 32 chunks of 32 SST-2 tokens, 5 targets per
chunk) once per seed (the seed drives the initial weights, the chunks drawn and their orders) and reports the
validation loss and how far it falls below the unigram cross-entropy. Writes plm_seeds.json and a RESULTS.md section.
"""
import argparse, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--seeds", type=int, default=5)
p.add_argument("--steps", type=int, default=600)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()

import torch
torch.set_num_threads(a.threads)
from llmcourse.core import seed_everything
from llmcourse.data import load_sst2
from llmcourse.tokenizers import train_wordpiece
from llmcourse.xlnet import XLNetConfig, XLNetLM, permutation_batch, token_chunks, train_permutation_lm

CHUNK, K, N_SENT = 32, 6, 20_000  # as the lesson's quick mode
sst_train, sst_dev = load_sst2("train"), load_sst2("dev")
wp = train_wordpiece(sst_train.sentence.tolist(), vocab_size=2000)
encode = lambda texts: wp(texts, add_special_tokens=False)["input_ids"]
train_chunks = token_chunks(encode(sst_train.sentence.tolist()[:N_SENT]), CHUNK, wp.sep_token_id)
valid_chunks = token_chunks(encode(sst_dev.sentence.tolist()), CHUNK, wp.sep_token_id)
valid = (valid_chunks, *permutation_batch(valid_chunks, CHUNK // K, torch.Generator().manual_seed(123)))
counts = torch.bincount(train_chunks.flatten(), minlength=len(wp)).float() + 1
unigram = -(counts / counts.sum()).log()[valid[3]].mean().item()
rows = []
for seed in range(a.seeds):
    seed_everything(seed)
    model = XLNetLM(XLNetConfig.tiny(vocab_size=len(wp), d_model=64, n_heads=4, d_ff=256))
    c0 = time.process_time()
    h = train_permutation_lm(model, train_chunks, valid, steps=a.steps, num_predict=CHUNK // K, eval_every=a.steps // 6, seed=seed)
    rows.append(dict(seed=seed, valid_loss=round(h.last("valid_loss"), 4), gain=round(unigram - h.last("valid_loss"), 4),
                     cpu_seconds=round(time.process_time() - c0, 1)))
    print(rows[-1], flush=True)
gains = [r["gain"] for r in rows]
mean = sum(gains) / len(gains)
sd = (sum((g - mean) ** 2 for g in gains) / max(1, len(gains) - 1)) ** 0.5
res = dict(unigram_loss=round(unigram, 4), runs=rows, gain_mean=round(mean, 4), gain_sd=round(sd, 4), gain_min=min(gains))
COMMIT = harness.commit()  # before record() rewrites the tracked JSON, which would read as -dirty
harness.record(__file__, "plm_seeds", res)
table = "\n".join(f"| {r['seed']} | {r['valid_loss']:.3f} | {r['gain']:.3f} | {r['cpu_seconds']:.0f} |" for r in rows)
harness.write_section(__file__, "plm_seeds", f"""## The quick permutation-LM run over seeds

`{harness.command()}` at commit {COMMIT}; {harness.machine_line()}.

Unigram cross-entropy of the validation targets (SST-2 dev, fixed orders): {unigram:.3f}.

| seed | validation loss | below the unigram loss (nats) | CPU s |
|---|---|---|---|
{table}

Gain over the unigram loss: mean {mean:.3f}, standard deviation {sd:.3f}, lowest {min(gains):.3f} over {len(rows)} seeds.""")

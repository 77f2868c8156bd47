"""Lesson 10: does per-utterance feature normalisation (CMVN) help the digit Whisper with unheard voices?

Trains the notebook's slow recipe (d_model 128, dropout 0.1, 5000 x 32, lr 1.5e-3) on the CPU, one thread, either on
Whisper's log-mel features as they are ("base") or with every mel bin of every utterance, training and test alike,
shifted to mean 0 and scaled to standard deviation 1 over time ("cmvn": cepstral mean and variance normalisation,
the classic answer to microphone and speaker differences). Test WER on the held-out speakers every 250 steps.

    python bench/whisper_cmvn.py cmvn 5000 bench/whisper_cmvn_cmvn.json
    python bench/whisper_cmvn.py base 5000 bench/whisper_cmvn_base.json
"""
import sys, time, json, torch, numpy as np
torch.set_num_threads(1)
from llmcourse.core import seed_everything
import llmcourse.whisper as W
mode, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def cmvn(mel):  # per utterance, per mel bin: zero mean, unit variance over time
    return (mel - mel.mean(-1, keepdim=True)) / (mel.std(-1, keepdim=True) + 1e-5)
if mode == "cmvn":
    orig = W.DigitUtterances.batch
    def batch(self, n, rng):
        mel, tok, texts = orig(self, n, rng); return cmvn(mel), tok, texts
    W.DigitUtterances.batch = batch
seed_everything(0)
model = W.Whisper(W.WhisperModelConfig.digits(d_model=128, dropout=0.1))
test = W.digit_test_set(200)   # built through batch, so normalised too in cmvn mode
t0 = time.perf_counter()
h = W.train_digits(model, W.DigitUtterances(), test, steps=steps, batch_size=32, lr=1.5e-3, warmup=100, eval_every=250)
wers = [(r["step"], round(r["test_wer"], 4)) for r in h.rows if "test_wer" in r]
print(mode, round(time.perf_counter() - t0), wers, flush=True)
json.dump(dict(mode=mode, seconds=time.perf_counter() - t0, wers=wers), open(out, "w"))

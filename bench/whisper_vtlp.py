"""Lesson 10: does vocal-tract-length perturbation (VTLP) help the digit Whisper with unheard voices?

FSDD gives the model four training voices. VTLP (Jaitly and Hinton, 2013) makes new ones by stretching the frequency
axis of each training utterance by a random factor, here on the log-mel features: bin f takes the value at bin f * alpha
(linear interpolation, the top bin held), alpha drawn uniformly from [1 - w, 1 + w] per utterance. Test features are
left alone. The recipe is the notebook's slow one (d_model 128, dropout 0.1, 5000 x 32, lr 1.5e-3), CPU, one thread.

    python bench/whisper_vtlp.py 0.1 5000 bench/whisper_vtlp_10.json
"""
import sys, time, json, torch, numpy as np
torch.set_num_threads(1)
from llmcourse.core import seed_everything
import llmcourse.whisper as W

width, steps, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def vtlp(mel, rng, width):
    "mel: (n, n_mels, frames); each utterance's mel axis stretched by its own factor."
    n, m, _ = mel.shape
    alpha = torch.from_numpy(rng.uniform(1 - width, 1 + width, n)).float()  # (n,)
    src = (torch.arange(m).float()[None, :] * alpha[:, None]).clamp(max=m - 1)  # (n, m) source bin per bin
    lo = src.floor().long(); hi = (lo + 1).clamp(max=m - 1); frac = (src - lo)[..., None]  # (n, m, 1)
    take = lambda idx: torch.gather(mel, 1, idx[..., None].expand(-1, -1, mel.shape[-1]))
    return take(lo) * (1 - frac) + take(hi) * frac

orig = W.DigitUtterances.batch
def batch(self, n, rng):
    mel, tok, texts = orig(self, n, rng)
    return (vtlp(mel, rng, width) if self.augment else mel), tok, texts
W.DigitUtterances.batch = batch

seed_everything(0)
model = W.Whisper(W.WhisperModelConfig.digits(d_model=128, dropout=0.1))
test = W.digit_test_set(200)  # augment=False: features untouched
t0 = time.perf_counter()
h = W.train_digits(model, W.DigitUtterances(), test, steps=steps, batch_size=32, lr=1.5e-3, warmup=100, eval_every=250)
wers = [(r["step"], round(r["test_wer"], 4)) for r in h.rows if "test_wer" in r]
print(width, round(time.perf_counter() - t0), wers, flush=True)
json.dump(dict(vtlp_width=width, seconds=time.perf_counter() - t0, wers=wers, threads=1, device="cpu"), open(out, "w"), indent=1)

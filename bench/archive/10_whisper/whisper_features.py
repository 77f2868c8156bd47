"""Lesson 10: do feature-level changes help the digit Whisper with unheard voices?

Trains the notebook's slow recipe (d_model 128, dropout 0.1, 5000 x 32, lr 1.5e-3) on the CPU, one thread, and
records the test WER on the held-out speakers every 250 steps. `MODE` picks what happens to the log-mel features:

- `base`: Whisper's features as they are.
- `cmvn`: every mel bin of every utterance, training and test alike, shifted to mean 0 and scaled to standard
  deviation 1 over time (cepstral mean and variance normalisation, the classic answer to microphone and speaker
  differences).
- `vtlp=W`: vocal-tract-length perturbation (Jaitly and Hinton, 2013), training utterances only: bin f takes the value at
  bin f * alpha (linear interpolation, the top bin held), alpha uniform in [1 - W, 1 + W] per utterance, which makes new
  voices out of FSDD's four training speakers.

    python bench/whisper_features.py base 5000 bench/whisper_cmvn_base.json
    python bench/whisper_features.py cmvn 5000 bench/whisper_cmvn_cmvn.json
    python bench/whisper_features.py vtlp=0.2 5000 bench/whisper_vtlp_20.json
"""
import json, sys, time
import numpy as np
import torch
from torch import Tensor
from llmcourse.core import seed_everything
from llmcourse.whisper import DigitUtterances, Whisper, WhisperModelConfig, digit_test_set, train_digits, warp_mel


def cmvn(mel:Tensor) -> Tensor:
    "(n, n_mels, frames) -> the same, each bin of each utterance at mean 0 and standard deviation 1 over time."
    return (mel - mel.mean(-1, keepdim=True)) / (mel.std(-1, keepdim=True) + 1e-5)


def vtlp(mel:Tensor, rng:np.random.Generator, width:float) -> Tensor:
    "(n, n_mels, frames) -> the same, each utterance's mel axis stretched by its own factor in [1 - width, 1 + width]."
    return warp_mel(mel, torch.from_numpy(rng.uniform(1 - width, 1 + width, mel.size(0))))


class TransformedUtterances(DigitUtterances):
    "`DigitUtterances` whose training features pass through `transform(mel, rng)`."
    def __init__(self, transform, **kw):
        super().__init__(peak=None, **kw); self.transform = transform  # these runs used the features as recorded

    def batch(self, n, rng):
        mel, tokens, texts = super().batch(n, rng)
        return self.transform(mel, rng), tokens, texts


def main():
    mode, steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    test_mel, test_texts = digit_test_set(200, peak=None)
    if mode == "base": transform = lambda mel, rng: mel
    elif mode == "cmvn": transform, test_mel = (lambda mel, rng: cmvn(mel)), cmvn(test_mel)
    elif mode.startswith("vtlp="): transform = lambda mel, rng, w=float(mode[5:]): vtlp(mel, rng, w)
    else: raise SystemExit(f"MODE is base, cmvn or vtlp=W, not {mode!r}")
    seed_everything(0)
    model = Whisper(WhisperModelConfig.digits(d_model=128, dropout=0.1))
    t0 = time.perf_counter()
    h = train_digits(model, TransformedUtterances(transform), (test_mel, test_texts), steps=steps, batch_size=32,
                     lr=1.5e-3, warmup=100, eval_every=250)
    wers = [(r["step"], round(r["test_wer"], 4)) for r in h.rows if "test_wer" in r]
    print(mode, round(time.perf_counter() - t0), wers, flush=True)
    with open(out, "w") as f:
        json.dump(dict(mode=mode, seconds=time.perf_counter() - t0, wers=wers, threads=1, device="cpu"), f, indent=1)


if __name__ == "__main__": main()

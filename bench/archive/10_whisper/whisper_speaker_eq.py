"""Lesson 10: how much a speaker equaliser fitted on unlabelled audio helps the spoken-digit Whispers on unheard voices.

`equalizer_gains` measures each held-out speaker's long-term mel spectrum over the speech frames of their clips (no
transcripts) and adds, to every mel bin of their features, the difference to the training speakers' average. This
script scores the shipped models (`data/whisper/digits*.pt`, or `--models`) alone and as an ensemble, with greedy
decoding on the lesson's 200 test utterances, under variants of how the equaliser is estimated:

- `all clips`: every clip of the speaker, the lesson's choice (`digit_test_set(equalize=True)`);
- `unused clips`: only the clips that none of the 200 test utterances contains;
- `50 clips, draw k`: 50 clips drawn at random;
- `speech_db 20 / 40`: a stricter or looser cut between speech and silence frames;
- `line`, `cubic`: the gain curve smoothed by a least-squares polynomial over the mel axis (for comparison only).

    python bench/whisper_speaker_eq.py --out bench/whisper_speaker_eq.json
"""
from __future__ import annotations
import argparse, json, time
import numpy as np, torch
from llmcourse.data import load_fsdd
from llmcourse.whisper import (TEST_SPEAKERS, DigitTokenizer, DigitUtterances, _speaker_clips, digit_test_set, digit_test_speakers,
                               ensemble_transcribe, evaluate, load_digit_model, speaker_spectrum, word_error_rate)

WARPS = (0.85, 0.92, 1.0, 1.08, 1.15)

class Watched(tuple):
    "A speaker's clips that remember which indices were read."
    def __new__(cls, clips, seen): t = super().__new__(cls, clips); t.seen = seen; return t
    def __getitem__(self, i): self.seen.add(int(i)); return tuple.__getitem__(self, i)

def test_features(gains:dict|None, n:int=200, seed:int=1234):
    "The lesson's test set (features, texts, speakers, clip indices used per speaker) with per-speaker `gains`."
    ds = DigitUtterances(TEST_SPEAKERS, augment=False, gains=gains)
    seen = {s: set() for s in TEST_SPEAKERS}
    ds.clips = {s: Watched(c, seen[s]) for s, c in ds.clips.items()}
    mel, _, texts = ds.batch(n, np.random.default_rng(seed))
    return mel, texts, digit_test_speakers(n, seed=seed), seen

def smooth(g:torch.Tensor, degree:int) -> torch.Tensor:
    x = torch.linspace(-1, 1, len(g))
    V = torch.stack([x ** i for i in range(degree + 1)], 1)
    return V @ torch.linalg.lstsq(V, g[:, None]).solution[:, 0]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["data/whisper/digits.pt", "data/whisper/digits_s1.pt", "data/whisper/digits_s2.pt"])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    models, tok = [load_digit_model(p) for p in a.models], DigitTokenizer()
    mel0, texts, speakers, seen = test_features(None)
    assert texts == digit_test_set(200)[1]
    train_speakers = sorted(set(load_fsdd().frame.speaker) - set(TEST_SPEAKERS))
    clips = {s: [x for x, _ in _speaker_clips(s)] for s in set(train_speakers) | set(TEST_SPEAKERS)}
    targets = {db: torch.stack([speaker_spectrum(clips[s], speech_db=db) for s in train_speakers]).mean(0) for db in (20.0, 30.0, 40.0)}
    def gains(pick=lambda s, c: c, speech_db=30.0, degree=None):
        target = targets[speech_db]  # the training speakers' average, measured once per speech cut
        g = {s: target - speaker_spectrum(pick(s, clips[s]), speech_db=speech_db) for s in TEST_SPEAKERS}
        return g if degree is None else {s: smooth(v, degree) for s, v in g.items()}
    draw = lambda k: (lambda s, c: [c[i] for i in np.random.default_rng(k).choice(len(c), 50, replace=False)])
    variants = {"none": None, "all clips": gains(),
                "unused clips": gains(lambda s, c: [x for i, x in enumerate(c) if i not in seen[s]]),
                **{f"50 clips, draw {k}": gains(draw(k)) for k in range(3)},
                "speech_db 20": gains(speech_db=20.0), "speech_db 40": gains(speech_db=40.0),
                "line": gains(degree=1), "cubic": gains(degree=3)}
    rows = []
    for name, g in variants.items():
        t0 = time.perf_counter()
        mel = mel0 if g is None else test_features(g)[0]
        singles = [evaluate(m, mel, texts, tok)[0] for m in models]
        ens = word_error_rate(texts, ensemble_transcribe(models, mel, tok))
        hyps = ensemble_transcribe(models, mel, tok, WARPS)
        by_speaker = {s: word_error_rate(*zip(*[(t, h) for t, h, w in zip(texts, hyps, speakers) if w == s])) for s in TEST_SPEAKERS}
        rows.append(dict(variant=name, singles=singles, ensemble=ens, ensemble_5_stretches=word_error_rate(texts, hyps),
                         ensemble_5_stretches_by_speaker=by_speaker,
                         gain_db_by_quarter=None if g is None else {s: [round(float(v[i:i + 20].mean()) * 10, 1) for i in range(0, 80, 20)] for s, v in g.items()},
                         seconds=time.perf_counter() - t0))
        print(f"{name:18s} singles {' '.join(f'{w:.1%}' for w in singles)}  ensemble {ens:.1%}  x5 stretches {rows[-1]['ensemble_5_stretches']:.1%} "
              f"{ {s: f'{w:.1%}' for s, w in by_speaker.items()} }", flush=True)
    json.dump(dict(models=a.models, test="digit_test_set(200)", used_clips={s: len(v) for s, v in seen.items()},
                   utterances={s: speakers.count(s) for s in TEST_SPEAKERS}, rows=rows), open(a.out, "w"), indent=1)

if __name__ == "__main__": main()

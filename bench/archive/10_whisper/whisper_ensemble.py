"""Lesson 10: word error rate of spoken-digit Whispers alone, together (an ensemble), and hearing stretched input.

Reads the packed `weights_K.pt` files of `bench/whisper_digits_sweep.py` or files of `save_digit_model`, scores every
model on the lesson's 200 test utterances of the held-out speakers (greedy decoding), then groups of them with
`ensemble_transcribe` (mean next-token log-probabilities over models and mel stretches).

    python bench/whisper_ensemble.py --out bench/whisper_ensemble_sweep_c.json /work/.device/1/weights_*.pt \\
        --group n_vtlp2 n_vtlp2_s1 n_vtlp2_s2 --group ALL
"""
from __future__ import annotations
import argparse, json, time
import torch
from llmcourse.whisper import (DigitTokenizer, Whisper, WhisperModelConfig, digit_test_set, ensemble_transcribe, evaluate,
                               load_digit_model, word_error_rate)

WARPS = {"none": (1.0,), "3": (0.9, 1.0, 1.1), "5": (0.85, 0.92, 1.0, 1.08, 1.15)}

def load(path:str) -> dict[str, Whisper]:
    "name -> model for every model in a sweep pack (raw and, where kept, averaged weights) or a `save_digit_model` file."
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if set(saved) == {"config", "state_dict"}: return {path.rsplit("/", 1)[-1].removesuffix(".pt"): load_digit_model(path)}
    out = {}
    for name, d in saved.items():
        for kind in ("state_dict", "averaged"):
            if kind not in d: continue
            m = Whisper(WhisperModelConfig(**d["config"]))
            m.load_state_dict({k: v.float() for k, v in d[kind].items()})
            out[name if kind == "state_dict" else f"{name}@avg"] = m.eval()
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--group", nargs="+", action="append", default=[], help="model names to ensemble; ALL, or ALL@avg for every averaged model")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(2)
    models = {k: v for f in a.files for k, v in load(f).items()}
    mel, texts = digit_test_set(200)
    tok, rows = DigitTokenizer(), []
    for name, m in models.items():
        rows.append(dict(models=[name], warps="none", wer=evaluate(m, mel, texts, tok)[0]))
        print(f"{name:24s} {rows[-1]['wer']:.1%}", flush=True)
    for group in a.group:
        names = ([n for n in models if "@" not in n] if group == ["ALL"] else [n for n in models if n.endswith("@avg")]
                 if group == ["ALL@avg"] else group)
        for w, warps in WARPS.items():
            t0 = time.perf_counter()
            wer = word_error_rate(texts, ensemble_transcribe([models[n] for n in names], mel, tok, warps))
            rows.append(dict(models=names, warps=w, wer=wer, seconds=time.perf_counter() - t0))
            print(f"{len(names)} models, warps {w}: {wer:.1%} ({rows[-1]['seconds']:.1f} s) {names}", flush=True)
    json.dump(dict(files=a.files, test="digit_test_set(200)", rows=rows), open(a.out, "w"), indent=1)

if __name__ == "__main__": main()

"""Lesson 10: our log_mel_spectrogram against transformers' WhisperFeatureExtractor (time and max abs error), and
Whisper tiny.en through faster-whisper on recordings of spoken digits (WER and real-time factor).

Each time is the median of `--repeat` runs on 30 s clips of noise (the feature extractor's fixed window); the max abs
error is measured on the same input. Writes `whisper_mel.json` and its section of RESULTS.md.

    python bench/10_whisper/whisper_mel.py [--batch 1 8] [--repeat 5] [--threads 2]
"""
import argparse, statistics, sys, time
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import machine_line, record, write_section
from llmcourse.whisper import N_SAMPLES, SAMPLE_RATE, digit_recording, log_mel_spectrogram, normalize_digits, transcribe, word_error_rate

def median_time(fn, repeat):
    fn()  # warm-up: filters, windows, allocations
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    from transformers import WhisperFeatureExtractor
    fe, rng, mel_rows = WhisperFeatureExtractor(), np.random.default_rng(0), []
    for b in a.batch:
        audio = rng.normal(0, 0.1, (b, N_SAMPLES)).astype(np.float32)
        clips = list(audio)
        t_hf = median_time(lambda: fe(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt"), a.repeat)
        t_ours = median_time(lambda: log_mel_spectrogram(audio), a.repeat)
        err = (log_mel_spectrogram(audio) - fe(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features).abs().max().item()
        mel_rows.append(dict(clips=b, hf_ms=1000 * t_hf, ours_ms=1000 * t_ours, max_abs_error=err))
        print(mel_rows[-1], flush=True)
    refs, hyps, audio_s, secs = [], [], 0.0, 0.0
    for speaker in ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]:
        for take in (1, 2):
            x, text = digit_recording(speaker, np.random.default_rng(take).permutation(10).tolist(), take=take)
            r = transcribe(x, sample_rate=SAMPLE_RATE)
            refs.append(text); hyps.append(normalize_digits(r.text)); audio_s += r.duration; secs += r.seconds
    fw = dict(recordings=len(refs), audio_s=audio_s, wer=word_error_rate(refs, hyps), rtf=secs / audio_s)
    record(__file__, "whisper_mel", dict(transformers=transformers.__version__, repeat=a.repeat, mel=mel_rows, faster_whisper=fw))
    lines = ["## Log-mel features and faster-whisper (`whisper_mel.py`)", "", f"Machine: {machine_line()}. Median of {a.repeat} runs.", "",
             "| clips of 30 s | WhisperFeatureExtractor (ms) | ours (ms) | speed-up | max abs error |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['clips']} | {r['hf_ms']:.1f} | {r['ours_ms']:.1f} | {r['hf_ms'] / r['ours_ms']:.1f}x | {r['max_abs_error']:.1e} |" for r in mel_rows]
    lines += ["", f"faster-whisper tiny.en (int8, 2 CPU threads, beam 5): {fw['recordings']} recordings of ten digits, two per FSDD "
              f"speaker ({fw['audio_s']:.0f} s of audio): WER {fw['wer']:.1%}, real-time factor {fw['rtf']:.2f}. The timings were "
              "taken on a shared machine; the load average above says how busy it was."]
    write_section(__file__, "whisper_mel", "\n".join(lines))

if __name__ == "__main__":
    main()

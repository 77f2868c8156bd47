"""Lesson 10 benchmark: our log_mel_spectrogram against transformers' WhisperFeatureExtractor, and faster-whisper's speed.

Usage: LLMCOURSE_MIRROR=../shared/data python bench/whisper_mel.py [--batch 1 8] [--repeat 5] [--threads 2] [--out bench/RESULTS_whisper.md]
Each number is the median of `--repeat` runs on 30 s clips of noise (the feature extractor's fixed window); the
max abs error is measured on the same input. `--fw` also times Whisper tiny.en through faster-whisper.
"""
import argparse, os, platform, statistics, time
import numpy as np
import torch
from llmcourse.whisper import N_SAMPLES, SAMPLE_RATE, digit_recording, log_mel_spectrogram, normalize_digits, transcribe, word_error_rate

def median_time(fn, repeat):
    fn()  # warm-up: filters, windows, allocations
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fw", action="store_true", help="also time faster-whisper tiny.en on digit recordings")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
             f"torch {torch.__version__} ({a.threads} threads), transformers {transformers.__version__}; median of {a.repeat}", "",
             "| clips of 30 s | WhisperFeatureExtractor (ms) | ours (ms) | speed-up | max abs error |",
             "| --- | --- | --- | --- | --- |"]
    rng = np.random.default_rng(0)
    for b in a.batch:
        audio = rng.normal(0, 0.1, (b, N_SAMPLES)).astype(np.float32)
        clips = list(audio)
        t_hf = median_time(lambda: fe(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt"), a.repeat)
        t_ours = median_time(lambda: log_mel_spectrogram(audio), a.repeat)
        err = (log_mel_spectrogram(audio) - fe(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features).abs().max().item()
        lines.append(f"| {b} | {1000 * t_hf:.1f} | {1000 * t_ours:.1f} | {t_hf / t_ours:.1f}x | {err:.1e} |")
        print(lines[-1], flush=True)
    if a.fw:
        refs, hyps, audio_s, secs = [], [], 0.0, 0.0
        for speaker in ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]:
            for take in (1, 2):
                x, text = digit_recording(speaker, np.random.default_rng(take).permutation(10).tolist(), take=take)
                r = transcribe(x, sample_rate=SAMPLE_RATE)
                refs.append(text); hyps.append(normalize_digits(r.text)); audio_s += r.duration; secs += r.seconds
        lines += ["", f"faster-whisper tiny.en (int8, 2 CPU threads, beam 5): {len(refs)} recordings of ten digits "
                  f"({audio_s:.0f} s of audio): WER {word_error_rate(refs, hyps):.1%}, real-time factor {secs / audio_s:.2f}"]
        print(lines[-1])
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"# Lesson 10: log-mel spectrogram and faster-whisper\n\n`python bench/whisper_mel.py {' '.join(os.sys.argv[1:])}`, "
                    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{text}\n")

if __name__ == "__main__":
    main()

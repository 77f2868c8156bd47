"""Benchmark `llmcourse serve` (lesson 14): what the HTTP layer costs next to calling the models directly.

Measures, on the shipped models, with the server in a background thread on 127.0.0.1:
chat tokens/s direct (llama-cpp-python) and through the API, time to the first streamed token, embeddings/s
direct and through the API, Whisper's real-time factor on six spoken digits, and the wall time of 16 concurrent
chat requests. Usage: python bench/bench_serve.py [--quick] [--threads N]
"""
import argparse, os, platform, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from openai import OpenAI

from llmcourse.data import load_fsdd
from llmcourse.serve import BackgroundServer, ServeConfig, make_app, wav_bytes

CHAT, EMBED, WHISPER = "smollm2-135m-instruct", "all-minilm-l6-v2", "whisper-tiny.en"


def best_of(n, fn):
    "The fastest of `n` runs of `fn` (seconds) and its last result."
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer tokens and repeats")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per model (default: half the cores)")
    a = p.parse_args(argv)
    n_tok, reps = (32, 2) if a.quick else (128, 3)
    cfg = ServeConfig.shipped(**({"threads": a.threads} if a.threads else {}))
    torch.set_num_threads(cfg.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; threads per model {cfg.threads}; torch {torch.__version__}; python "
          f"{platform.python_version()}")
    app = make_app(cfg)
    with BackgroundServer(app) as srv:
        pool = app.state.pool
        llm, emb, whisper = (pool.loaded[n] for n in (CHAT, EMBED, WHISPER))
        client = OpenAI(base_url=f"{srv.url}/v1", api_key="none", max_retries=0, timeout=600)
        prompt = "1, 2, 3, 4, 5,"
        kw = dict(prompt=prompt, max_tokens=n_tok, temperature=0)
        d, out = best_of(reps, lambda: llm("create_completion", **kw))
        n = out["usage"]["completion_tokens"]
        s, r = best_of(reps, lambda: client.completions.create(model=CHAT, **kw))
        print(f"completions, {n} tokens: direct {n/d:.1f} tok/s, through the API {r.usage.completion_tokens/s:.1f} tok/s")

        def first_token():
            t0 = time.perf_counter()
            for _ in client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hello!"}],
                                                    max_tokens=8, stream=True, temperature=0):
                return time.perf_counter() - t0
        ttft = statistics.median(first_token() for _ in range(reps + 2))
        print(f"chat stream: median time to first chunk {1000*ttft:.0f} ms")

        texts = [f"This is sentence number {i} about a topic of some interest." for i in range(64)]
        d, _ = best_of(reps, lambda: emb.embed(texts))
        s, _ = best_of(reps, lambda: client.embeddings.create(model=EMBED, input=texts))
        print(f"embeddings, batch of 64: direct {64/d:.0f} /s, through the API {64/s:.0f} /s")

        ds = load_fsdd(); f = ds.frame
        clips = [ds[f.index[(f.speaker == "jackson") & (f.digit == k) & (f["take"] == 0)][0]] for k in [3, 1, 4, 1, 5, 9]]
        audio = np.concatenate([x for c in clips for x in (c.audio, np.zeros(2400, np.float32))])
        secs = len(audio) / clips[0].sample_rate
        s, t = best_of(reps, lambda: client.audio.transcriptions.create(
            model=WHISPER, file=("d.wav", wav_bytes(audio, clips[0].sample_rate), "audio/wav")))
        print(f"transcription of {secs:.1f} s of audio: {s:.2f} s through the API, real-time factor {s/secs:.2f} "
              f"({t.text!r})")

        def ask(i):
            return client.chat.completions.create(model=CHAT, max_tokens=8, temperature=0,
                                                  messages=[{"role": "user", "content": f"Count to {i}."}])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as ex: rs = list(ex.map(ask, range(16)))
        w = time.perf_counter() - t0
        print(f"16 concurrent chat requests (max_tokens 8): all {sum(r is not None for r in rs)} answered in {w:.1f} s")
    return 0


if __name__ == "__main__": sys.exit(main())

#!/usr/bin/env python
"""Continuous batching in `llmcourse serve` (lesson 14): 1, 4, 16 and 32 concurrent streaming clients, each run one at
a time (`--max-batch 1`) and batched (`--max-batch 32`) on the same engine and model.

For every client count and mode: aggregate tokens/s (the engine's own count of tokens out, over the wall time), time
to first token (request sent -> first text) and inter-token latency (gaps between streamed pieces), p50 and p95. The
server runs in its own process through `serve_cli`, as `llmcourse serve` does; the clients are threads of this one.
The clients and the server share the machine's cores, so the same workloads are also run on the engine alone, in
one process. For scale, llama.cpp (llama-cpp-python) decoding one stream of the same GGUF with the same number of threads.

Also: greedy answers of the batched runs are compared with lesson 11's `generate` for every prompt (token for token,
as text up to the first end-of-turn token).

Usage: python bench/14_serve/batching.py [--quick] [--threads 1] [--tokens 32] [--requests 2]
Writes bench/14_serve/batching.json and its section of bench/14_serve/RESULTS.md.
"""
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import start_server

CLIENTS = (1, 4, 16, 32) # concurrent clients
MODES = {"one at a time": 1, "batched": 32} # --max-batch of the server
CHAT = "smollm2-135m-instruct"



def prompt_of(client, request):
    "A prompt whose greedy continuation runs on for a while (counting), different for every request."
    start = 3 + 7 * client + request
    return ", ".join(str(k) for k in range(start, start + 4)) + ","


def stream_one(url, prompt, max_tokens):
    "One streamed completion: (seconds to the first text, gaps between pieces, text)."
    t0, times, text = time.perf_counter(), [], []
    body = {"model": CHAT, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=3600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]": continue
            piece = json.loads(line[6:])["choices"][0]["text"]
            if piece: times.append(time.perf_counter()); text.append(piece)
    return times[0] - t0, list(np.diff(times)), "".join(text)


def run(url, n_clients, n_requests, max_tokens):
    "`n_clients` threads, each streaming `n_requests` completions one after another; the measurements."
    tokens_before = httpx.get(f"{url}/health").json()["models"][CHAT]["tokens_out"]
    def client(c): return [(prompt_of(c, k), *stream_one(url, prompt_of(c, k), max_tokens)) for k in range(n_requests)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as ex: per_client = list(ex.map(client, range(n_clients)))
    wall = time.perf_counter() - t0
    tokens = httpx.get(f"{url}/health").json()["models"][CHAT]["tokens_out"] - tokens_before
    answers = [a for c in per_client for a in c]
    ttft, itl = [a[1] for a in answers], [g for a in answers for g in a[2]]
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 4) if xs else None
    return dict(clients=n_clients, requests=len(answers), tokens=tokens, seconds=round(wall, 2),
                tokens_per_s=round(tokens / wall, 2), ttft_p50=pct(ttft, 50), ttft_p95=pct(ttft, 95),
                itl_p50=pct(itl, 50), itl_p95=pct(itl, 95)), {a[0]: a[3] for a in answers}


def llama_cpp_tokens_per_s(threads, n_tokens):
    "llama.cpp decoding one greedy stream of the same GGUF, tokens/s (prompt excluded)."
    from llama_cpp import Llama
    from llmcourse.data import smollm2_gguf
    llm = Llama(model_path=str(smollm2_gguf()), n_ctx=256, n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llm.tokenize(prompt_of(0, 0).encode(), add_bos=False)
    llm.eval(ids); tok = int(np.argmax(llm.scores[len(ids) - 1]))
    t0 = time.perf_counter()
    for _ in range(n_tokens): llm.eval([tok]); tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    return n_tokens / (time.perf_counter() - t0)


def engine_only(threads, n_requests, max_tokens):
    "The same workloads on the engine alone, in this process (no HTTP, no client threads): tokens/s per mode."
    import torch
    from llmcourse.batching import ContinuousBatcher, SamplingParams, load_chat_llama
    from llmcourse.data import smollm2_gguf
    torch.set_num_threads(threads)
    model, tok, _ = load_chat_llama(smollm2_gguf())
    rows = []
    for n in CLIENTS:
        for mode, max_batch in MODES.items():
            engine = ContinuousBatcher(model, tok, max_batch=max_batch, end_ids=set()) # every answer max_tokens long
            engine.warm_up()
            t0 = time.perf_counter()
            for k in range(n_requests): # each client's next request comes when its last one is answered
                for c in range(n): engine.submit(tok.encode(prompt_of(c, k)), SamplingParams(max_tokens=max_tokens))
                engine.run()
            wall = time.perf_counter() - t0
            rows.append(dict(mode=mode, clients=n, tokens=engine.tokens_out, seconds=round(wall, 2),
                             tokens_per_s=round(engine.tokens_out / wall, 2)))
            print("engine only", rows[-1], flush=True)
    return rows


def check_against_generate(texts, max_tokens):
    "How many batched answers equal lesson 11's greedy `generate` (text up to the first end-of-turn token)."
    import torch
    from llmcourse.batching import load_chat_llama, llama_generate
    from llmcourse.data import smollm2_gguf
    model, tok, _ = load_chat_llama(smollm2_gguf())
    ends = {i for i, t in enumerate(tok.tokens) if t in ("<|endoftext|>", "<|im_end|>")}
    same = 0
    for prompt, got in texts.items():
        ids = tok.encode(prompt)
        with torch.inference_mode(): out = llama_generate(model, torch.tensor([ids]), max_tokens)[0, len(ids):].tolist()
        out = out[:next((k for k, t in enumerate(out) if t in ends), len(out))]
        same += tok.decode(out) == got
    return same, len(texts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 tokens, 1 request per client: a smoke run, not a measurement")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the server's models (default 1)")
    p.add_argument("--tokens", type=int, default=32, help="max_tokens of every answer")
    p.add_argument("--requests", type=int, default=2, help="answers each client asks for, one after another")
    a = p.parse_args(argv)
    if a.quick: a.tokens, a.requests = 8, 1
    load_before = os.getloadavg()
    rows, texts, servers = [], {}, {}
    try:
        for mode, max_batch in MODES.items():
            servers[mode] = start_server(a.threads, "--max-batch", str(max_batch))
            stream_one(servers[mode][1], prompt_of(0, 0), 4) # warm up
        for n in CLIENTS: # both modes back to back at each client count: a machine whose load drifts treats them alike
            for mode, max_batch in MODES.items():
                row, t = run(servers[mode][1], n, a.requests, a.tokens)
                rows.append(dict(mode=mode, max_batch=max_batch, **row)); print(rows[-1], flush=True)
                if mode == "batched": texts.update(t)
    finally:
        for proc, _ in servers.values(): proc.terminate(); proc.wait(60)
    engine_rows = engine_only(a.threads, a.requests, a.tokens)
    cpp = llama_cpp_tokens_per_s(a.threads, a.tokens * 2)
    same, total = check_against_generate(texts, a.tokens)
    by = {(r["mode"], r["clients"]): r for r in rows}
    ratio = {n: round(by["batched", n]["tokens_per_s"] / by["one at a time", n]["tokens_per_s"], 2) for n in CLIENTS}
    eby = {(r["mode"], r["clients"]): r for r in engine_rows}
    engine_ratio = {n: round(eby["batched", n]["tokens_per_s"] / eby["one at a time", n]["tokens_per_s"], 2) for n in CLIENTS}
    results = dict(threads=a.threads, tokens=a.tokens, requests_per_client=a.requests, quick=a.quick,
                   load_average_before=[round(x, 2) for x in load_before], load_average_after=[round(x, 2) for x in os.getloadavg()],
                   rows=rows, batched_over_one_at_a_time=ratio, engine_only=engine_rows, engine_only_ratio=engine_ratio,
                   llama_cpp_one_stream_tokens_per_s=round(cpp, 2), greedy_equal_to_generate=f"{same}/{total}")
    at = harness.commit() # before the JSON is written, which would make the checkout dirty
    harness.record(__file__, "batching", results)
    lines = [f"`{harness.command()}` at {at}", "", harness.machine_line(), "",
             f"Load average when it started: {results['load_average_before']}. Server: `llmcourse serve --threads "
             f"{a.threads} --max-batch 1` or `32`, shipped models; clients stream completions of {a.tokens} tokens "
             f"(greedy), {a.requests} after one another each.", "",
             "| clients | mode | tokens/s | TTFT p50 (s) | TTFT p95 (s) | ITL p50 (s) | ITL p95 (s) |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["clients"], r["max_batch"])):
        lines.append(f"| {r['clients']} | {r['mode']} | {r['tokens_per_s']} | {r['ttft_p50']} | {r['ttft_p95']} | "
                     f"{r['itl_p50']} | {r['itl_p95']} |")
    lines += ["", "Batched over one at a time, aggregate tokens/s: " + ", ".join(f"{n} clients {x}x" for n, x in ratio.items())
              + f" (acceptance: at least 4x at 16 clients: {'met' if ratio[16] >= 4 else 'NOT met'}).",
              f"The engine alone (no HTTP, no client threads; the same workloads, every answer {a.tokens} tokens), batched over "
             "one at a time: " + ", ".join(f"{n} clients {x}x ({eby['batched', n]['tokens_per_s']} against "
                                           f"{eby['one at a time', n]['tokens_per_s']} tokens/s)" for n, x in engine_ratio.items()) + ".",
             f"Load average at the end: {results['load_average_after']}.",
             f"llama.cpp, one stream of the same GGUF, {a.threads} thread(s): {cpp:.1f} tokens/s.",
              f"Batched greedy answers equal to lesson 11's `generate`: {same} of {total}."]
    harness.write_section(__file__, "batching", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__": sys.exit(main())

"""Prompt and decode speed of SmolLM2-135M-Instruct: llama.cpp (llama-cpp-python), our PyTorch Llama with a KV cache,
and `transformers` `generate`, on the same weights; against the memory-bandwidth bound of this machine.

Usage: python bench/11_llama/llama_decode.py [--threads 2] [--prompt 128] [--decode 64]
"""
import argparse, sys, time
from pathlib import Path
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line


def memory_bandwidth(n_bytes=1 << 30, repeats=5):
    "Copy bandwidth in bytes/s (read + write counted) of a large NumPy copy, best of `repeats`."
    a = np.ones(n_bytes // 8, dtype=np.float64); b = np.empty_like(a)
    np.copyto(b, a)  # touch the pages
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(repeats))
    return 2 * a.nbytes / best


def _timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t


def bench_llama_cpp(path, prompt_ids, n_decode, threads):
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=len(prompt_ids) + n_decode + 8, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)
    llm.eval(prompt_ids[:8]); llm.reset()  # warm up
    t = time.perf_counter(); llm.eval(prompt_ids); t_prompt = time.perf_counter() - t
    tok = int(np.argmax(llm.scores[len(prompt_ids) - 1]))
    t = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([tok]); tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t_decode = time.perf_counter() - t
    llm.close()
    return len(prompt_ids) / t_prompt, n_decode / t_decode


@torch.no_grad()
def bench_ours(model, prompt_ids, n_decode):
    from llmcourse.llama import LlamaKVCache
    x = torch.tensor([prompt_ids])
    model(x[:, :8])  # warm up
    cache = LlamaKVCache(model.cfg, 1, len(prompt_ids) + n_decode)
    t = time.perf_counter(); logits = model(x, cache); t_prompt = time.perf_counter() - t
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    t = time.perf_counter()
    for _ in range(n_decode): nxt = model(nxt, cache)[:, -1].argmax(-1, keepdim=True)
    t_decode = time.perf_counter() - t
    return len(prompt_ids) / t_prompt, n_decode / t_decode


@torch.no_grad()
def bench_transformers(model, prompt_ids, n_decode):
    from transformers import LlamaForCausalLM
    from llmcourse.llama import to_hf_state_dict
    hf = LlamaForCausalLM(model.cfg.to_hf()).eval()
    hf.load_state_dict(to_hf_state_dict(model), strict=False); hf.tie_weights()
    x = torch.tensor([prompt_ids])
    hf(x[:, :8])  # warm up
    t = time.perf_counter(); hf(x, use_cache=True); t_prompt = time.perf_counter() - t
    kw = dict(do_sample=False, pad_token_id=0)
    t1 = _timed(lambda: hf.generate(x, max_new_tokens=1, min_new_tokens=1, **kw))
    tn = _timed(lambda: hf.generate(x, max_new_tokens=n_decode + 1, min_new_tokens=n_decode + 1, **kw))
    return len(prompt_ids) / t_prompt, n_decode / (tn - t1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from llmcourse.data import smollm2_gguf, load_tiny_shakespeare
    from llmcourse.gguf_io import load_gguf_llama, GGUFTokenizer, read_gguf_header
    path = smollm2_gguf()
    weight_bytes = sum(t.n_bytes for t in read_gguf_header(path).tensors)
    tok = GGUFTokenizer.from_gguf(path)
    prompt = tok.encode(load_tiny_shakespeare()[:4000])[:a.prompt]
    bw = memory_bandwidth()
    model = load_gguf_llama(path)
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    rows = [("llama.cpp (Q4_1/Q8_0 GGUF)", weight_bytes, *bench_llama_cpp(path, prompt, a.decode, a.threads)),
            ("ours, PyTorch fp32 + KV cache", fp32_bytes, *bench_ours(model, prompt, a.decode)),
            ("transformers generate, fp32", fp32_bytes, *bench_transformers(model, prompt, a.decode))]
    record(__file__, "llama_decode", dict(threads=a.threads, prompt_tokens=len(prompt), decode_tokens=a.decode,
                                          copy_bandwidth_bytes_per_s=bw, engines=[dict(engine=n, weight_bytes=wb, prompt_tok_s=pp,
                                          decode_tok_s=dec, bound_tok_s=bw / wb) for n, wb, pp, dec in rows]))
    lines = ["## SmolLM2-135M-Instruct decode speed", "", f"Machine: {machine_line()}.", "",
             f"{a.threads} threads for every engine. Prompt {len(prompt)} tokens, then {a.decode} greedy tokens. "
             f"Measured copy bandwidth (NumPy, 1 GiB, read+write): **{bw/1e9:.1f} GB/s**. Decode reads every weight once "
             "per token, so the bound is bandwidth / weight bytes.", "",
             "| engine | weight bytes | prompt tok/s | decode tok/s | bandwidth bound tok/s | fraction of bound |",
             "|---|---|---|---|---|---|"]
    for name, nb, pp, dec in rows:
        bound = bw / nb
        lines.append(f"| {name} | {nb/1e6:.0f} MB | {pp:.0f} | {dec:.1f} | {bound:.0f} | {dec/bound:.0%} |")
    lines.append("\nThe bound ignores the KV cache and activations (small here) and assumes the copy bandwidth is what a "
                 "matrix-vector product can stream; a 135M model is small enough that per-token overheads (thread "
                 "wake-ups, Python, kernel launches) also count. On a loaded machine (see the load average above) "
                 "llama.cpp's threads spin-wait for each other and slow down far more than PyTorch.")
    write_section(__file__, "llama_decode", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__": main()

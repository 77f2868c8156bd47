"""Lesson 02 benchmark: training time and encoding throughput of our byte-level BPE against Hugging Face.

Usage: LLMCOURSE_MIRROR=../shared/data python bench/bench_tokenizers.py [--vocab 1024 4096] [--out bench/RESULTS_tokenizers.md]
Trains on the first 90% of tiny Shakespeare, encodes the whole corpus; best of `--repeat` runs for each number.
"""
import argparse, os, platform, tempfile, time
from pathlib import Path
from llmcourse.data import load_tiny_shakespeare
from llmcourse.tokenizers import BPETokenizer, train_hf_bpe, hf_merges, save_bpe

def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return min(times), out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from transformers import GPT2TokenizerFast
    import tokenizers, transformers
    text = load_tiny_shakespeare(); train = text[:int(0.9*len(text))]
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
             f"Python {platform.python_version()}, tokenizers {tokenizers.__version__}, transformers {transformers.__version__}", "",
             "| vocab | train ours (s) | train HF tokenizers (s) | merges equal | encode corpus: ours cold (s) | ours cached (s) | GPT2TokenizerFast (s) | HF Tokenizer (s) | tokens | ids equal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v in a.vocab:
        t_ours, ours = best(lambda: BPETokenizer.train(train, v), a.repeat)
        t_hf, hf = best(lambda: train_hf_bpe(train, v), a.repeat)
        same = [(ours.token_str(x), ours.token_str(y)) for x, y in ours.merges] == hf_merges(hf)
        fresh = BPETokenizer(ours.merges)
        t_cold, ids = best(lambda: BPETokenizer(ours.merges).encode(text), 1)
        fresh.encode(text); t_warm, _ = best(lambda: fresh.encode(text), a.repeat)
        with tempfile.TemporaryDirectory() as d:
            fast = GPT2TokenizerFast.from_pretrained(save_bpe(ours, Path(d)))
            t_fast, fids = best(lambda: fast(text)["input_ids"], a.repeat)
        t_tok, hids = best(lambda: hf.encode(text).ids, a.repeat)
        lines.append(f"| {v} | {t_ours:.2f} | {t_hf:.2f} | {same} | {t_cold:.2f} | {t_warm:.2f} | {t_fast:.2f} | {t_tok:.2f} | "
                     f"{len(ids):,} | {ids == fids == hids} |")
        print(lines[-1], flush=True)
    report = "\n".join(lines)
    print(report)
    if a.out: Path(a.out).write_text("# Lesson 02 tokenizers: benchmark\n\n" + report + "\n")

if __name__ == "__main__": main()

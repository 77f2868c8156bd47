"""Lesson 02 benchmark: train byte-level BPE with the definition, with incremental counts and with Hugging Face
`tokenizers`, side by side on the same text, and encode the corpus with ours and with Hugging Face.

    python bench/02_tokenizers/bench_tokenizers.py [--vocab 1024 4096] [--repeat 3] [--no-slow]

Trains on the first 90% of tiny Shakespeare (the lesson's training text) and encodes the whole corpus. Each timing is
the best of `--repeat` runs, the trainers taking turns within each repeat so that a change of load hits all of them;
the definition (`learn_bpe_merges`, tens of seconds at 4,096) runs once. Writes `bpe.json` and the `bpe` section of
RESULTS.md.
"""
import argparse, collections, os, sys, tempfile, time
from pathlib import Path
os.environ["TOKENIZERS_PARALLELISM"] = "true" # Hugging Face trains with every core, as it does by default; ours uses one
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
from llmcourse.data import load_tiny_shakespeare
from llmcourse.tokenizers import (BPETokenizer, learn_bpe_merges, learn_bpe_merges_fast, pretokenize, train_hf_bpe,
                                  hf_merges, save_bpe)

def timed(fn):
    t0 = time.perf_counter(); out = fn(); return time.perf_counter() - t0, out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-slow", action="store_true", help="skip the definition (learn_bpe_merges)")
    a = ap.parse_args()
    import tokenizers, transformers
    from transformers import GPT2TokenizerFast
    text = load_tiny_shakespeare(); train = text[:int(0.9*len(text))]
    load_start = os.getloadavg()
    rows = []
    for v in a.vocab:
        times = collections.defaultdict(list)
        for _ in range(a.repeat):
            t, hf = timed(lambda: train_hf_bpe(train, v)); times["hf"].append(t)
            t, ours = timed(lambda: BPETokenizer.train(train, v)); times["train"].append(t)
            counts = collections.Counter(pretokenize(train))
            t, fast = timed(lambda: learn_bpe_merges_fast(counts, v - 256)); times["fast"].append(t)
        names = lambda merges: [(ours.token_str(x), ours.token_str(y)) for x, y in merges]
        theirs = hf_merges(hf)
        row = dict(vocab=v, hf_s=min(times["hf"]), train_s=min(times["train"]), fast_s=min(times["fast"]),
                   fast_merges_equal_hf=names(fast) == theirs, train_merges_equal_hf=names(ours.merges) == theirs)
        if not a.no_slow:
            row["slow_s"], slow = timed(lambda: learn_bpe_merges(counts, v - 256))
            row["slow_merges_equal_hf"] = names(slow) == theirs
        row["train_over_hf"] = row["train_s"] / row["hf_s"]
        t_cold, ids = timed(lambda: BPETokenizer(ours.merges).encode(text))
        warm = [timed(lambda: ours.encode(text))[0] for _ in range(a.repeat)]
        with tempfile.TemporaryDirectory() as d:
            fast_tok = GPT2TokenizerFast.from_pretrained(save_bpe(ours, Path(d)))
            t_fast, fids = min(timed(lambda: fast_tok(text)["input_ids"]) for _ in range(a.repeat))
        t_hf_enc, hids = min(timed(lambda: hf.encode(text).ids) for _ in range(a.repeat))
        row.update(encode_cold_s=t_cold, encode_cached_s=min(warm), encode_gpt2_fast_s=t_fast, encode_hf_s=t_hf_enc,
                   tokens=len(ids), ids_equal=ids == fids == hids)
        rows.append(row); print(row, flush=True)
    results = dict(rows=rows, load_at_start=load_start, load_at_end=os.getloadavg(),
                   tokenizers=tokenizers.__version__, transformers=transformers.__version__)
    harness.record(__file__, "bpe", results)
    m = harness.machine()
    lines = ["## Training and encoding byte-level BPE", "",
             f"`{harness.command()}` at commit `{harness.commit()}`; tokenizers {tokenizers.__version__}, "
             f"transformers {transformers.__version__}.", f"Machine: {harness.machine_line(m)}.",
             f"Load average (1, 5, 15 min) at the start {tuple(round(x, 2) for x in load_start)}, at the end "
             f"{tuple(round(x, 2) for x in os.getloadavg())}: on a loaded machine every time is inflated, so compare "
             "within a row.", "",
             "Training text: the first 90% of tiny Shakespeare. Times in seconds, best of the repeats. "
             "`BPETokenizer.train` and Hugging Face both pre-tokenize the text; the `learn_bpe_merges*` columns start "
             "from the word counts. Hugging Face runs on every core (`TOKENIZERS_PARALLELISM=true`), ours on one.", "",
             "| vocab | definition (`learn_bpe_merges`) | incremental (`learn_bpe_merges_fast`) | `BPETokenizer.train` | "
             "HF `tokenizers` | ours / HF | merges equal to HF (definition, incremental, train) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        slow = f"{r['slow_s']:.2f}" if "slow_s" in r else "-"
        lines.append(f"| {r['vocab']} | {slow} | {r['fast_s']:.2f} | {r['train_s']:.2f} | {r['hf_s']:.2f} | "
                     f"{r['train_over_hf']:.2f}x | {r.get('slow_merges_equal_hf', '-')}, {r['fast_merges_equal_hf']}, "
                     f"{r['train_merges_equal_hf']} |")
    lines += ["", "Encoding the whole corpus (seconds):", "",
              "| vocab | ours, cold cache | ours, cached | `GPT2TokenizerFast` from our files | HF `Tokenizer` | tokens | ids equal |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['vocab']} | {r['encode_cold_s']:.2f} | {r['encode_cached_s']:.2f} | {r['encode_gpt2_fast_s']:.2f} | "
                     f"{r['encode_hf_s']:.2f} | {r['tokens']:,} | {r['ids_equal']} |")
    harness.write_section(__file__, "bpe", "\n".join(lines))

if __name__ == "__main__": main()

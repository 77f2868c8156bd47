"""The tiny Llama of lessons 11 and 11a at their quick-mode recipe, over seeds: its validation loss after training, and
how closely llama.cpp reproduces it from the GGUF files lesson 11a writes (F32, F16, Q8_0, Q4_0). The spread over seeds is
the margin of the bounds the lessons assert.

Usage: python bench/11_llama/tiny_llama_seeds.py [--seeds 0 1 2] [--steps 150]
"""
import argparse, math, sys, tempfile
from pathlib import Path
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import record, write_section, machine_line

N_MERGES, TRAIN_FRACTION, ROUND_TRIP_TOKENS, BATCH_SIZE = 64, 0.9, 256, 16  # the lessons' settings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import llama_cpp
    from llmcourse.core import seed_everything
    from llmcourse.data import load_tiny_shakespeare
    from llmcourse.tokenizers import BPETokenizer
    from llmcourse.llama import Llama, LlamaConfig, train_llama
    from llmcourse.gguf_io import GGUFTokenizer, save_gguf, llama_cpp_logits, compare_next_token
    text = load_tiny_shakespeare()
    bpe = BPETokenizer.train(text, 256 + N_MERGES)
    tok = GGUFTokenizer.from_bpe(bpe)
    data = torch.tensor(bpe.encode(text), dtype=torch.long)
    n_train = int(TRAIN_FRACTION * len(data)); train_data, val_data = data[:n_train], data[n_train:]
    runs = []
    for seed in a.seeds:
        seed_everything(seed)
        model = Llama(LlamaConfig.tiny(vocab_size=tok.vocab_size))
        hist = train_llama(model, train_data, val_data, steps=a.steps, batch_size=BATCH_SIZE, seed=seed)
        model.eval()
        ids = val_data[:ROUND_TRIP_TOKENS].tolist()
        with torch.no_grad(): ours = model(torch.tensor([ids]))[0]
        run = dict(seed=seed, val_loss=hist.last("val_loss"), round_trip={})
        with tempfile.TemporaryDirectory() as d:
            for q in ("F32", "F16", "Q8_0", "Q4_0"):
                p = save_gguf(model, tok, Path(d) / f"tiny-{q}.gguf", q)
                cpp = llama_cpp.Llama(model_path=str(p), n_ctx=2 * ROUND_TRIP_TOKENS, logits_all=True, n_threads=2, verbose=False)
                r = compare_next_token(llama_cpp_logits(cpp, ids), ours); cpp.close()
                run["round_trip"][q] = {k: float(v) for k, v in r.items() if not isinstance(v, np.ndarray)}
        runs.append(run)
        print(run, flush=True)
    record(__file__, "tiny_llama_seeds", dict(steps=a.steps, seeds=a.seeds, runs=runs, uniform_loss=math.log(tok.vocab_size)))
    vl = np.array([r["val_loss"] for r in runs])
    lines = ["## The tiny Llama over seeds (quick-mode recipe)", "", f"Machine: {machine_line()}.", "",
             f"{a.steps} steps, batch {BATCH_SIZE}, vocabulary {tok.vocab_size} (uniform loss {math.log(tok.vocab_size):.2f}); "
             f"validation loss over seeds {a.seeds}: {', '.join(f'{v:.3f}' for v in vl)} (mean {vl.mean():.3f}, "
             f"largest {vl.max():.3f}). Lesson 11 asserts < 0.8 x uniform = {0.8 * math.log(tok.vocab_size):.2f}.", "",
             f"llama.cpp on the written files against our model, {ROUND_TRIP_TOKENS} validation tokens teacher-forced:", "",
             "| file | top-1 agreement (per seed) | max probability difference (per seed) | mean KL (per seed) |", "|---|---|---|---|"]
    for q in ("F32", "F16", "Q8_0", "Q4_0"):
        f = lambda k, fmt: ", ".join(format(r["round_trip"][q][k], fmt) for r in runs)
        lines.append(f"| {q} | {f('top1_agreement', '.4f')} | {f('max_prob_diff', '.2e')} | {f('mean_kl', '.1e')} |")
    write_section(__file__, "tiny_llama_seeds", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__": main()

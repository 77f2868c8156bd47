"""Lesson 03: every number of bench/03_elmo/RESULTS.md, measured.

1. AllenNLP parity: the top layer of AllenNLP's 30 test sentences (stateful, batches of three) and the token layer of
   its 458 test words, against the vectors in its fixture files.
2. The noun-or-verb probe over seeds: for each seed, the lesson's quick-mode biLM (`ElmoConfig.tiny()`, `--steps`
   Adam steps on SST-2 training sentences) is trained; the probe is chosen on the valid words and scored once on the
   test words, for the ELMo layers, the token layer (static) and an untrained biLM of the same shape (the control).
   The lesson's assertion on the contextual probe takes its margin from this spread.
3. Optionally (`--time-notebook`), the wall and CPU time of `nbdev-test nbs/03_elmo.ipynb`.

    python bench/03_elmo/elmo_results.py [--seeds 0,1,2,3,4] [--steps 90] [--time-notebook]
Writes bench/03_elmo/elmo_results[_steps<N>].json and its section of RESULTS.md.
"""
import argparse, resource, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness
from llmcourse.core import seed_everything
from llmcourse.data import elmo_test_vectors, load_sst2
from llmcourse.elmo import (ElmoBiLm, ElmoConfig, ElmoLanguageModel, PROBE_SPLITS, WordVocab, batch_to_ids, choose_probe,
                            embed_vocabulary, load_elmo, noun_verb_sentences, read_elmo_test_vectors,
                            remove_sentence_boundaries, train_elmo_lm, vectors_at, word_bootstrap)

def parity() -> dict:
    import h5py
    fx = elmo_test_vectors()
    bilm = load_elmo(fx/"options.json", fx/"lm_weights.hdf5", stateful=True)
    groups, expected = read_elmo_test_vectors(fx)
    # each batch once, in order: the model is stateful
    diffs, n_values, ok = [], 0, True
    with torch.no_grad():
        for i in range(len(groups[0])):
            batch = [groups[k][i].split() for k in range(len(groups))]
            out = bilm(batch_to_ids(batch))
            top, _ = remove_sentence_boundaries(out.activations[-1], out.mask)
            for k, s in enumerate(batch):
                d = np.abs(top[k, :len(s)].numpy() - expected[k][i]); diffs.append(d.ravel()); n_values += d.size
                ok &= np.allclose(top[k, :len(s)].numpy(), expected[k][i], atol=1e-6)
    diffs = np.concatenate(diffs)
    words = (fx/"vocab_test.txt").read_text().strip().split("\n")
    with h5py.File(fx/"elmo_token_embeddings.hdf5") as fin: expected_tokens = fin["embedding"][...]
    tok = np.abs(embed_vocabulary(bilm, words).numpy() - expected_tokens)
    return dict(sentences=sum(len(g) for g in groups), top_max_abs=float(diffs.max()), top_values=int(n_values),
                top_over_1e6=int((diffs > 1e-6).sum()), top_allclose_allennlp=bool(ok), token_words=len(words), token_max_abs=float(tok.max()))

def train_bilm(seed:int, steps:int):
    "The lesson's quick-mode biLM: `ElmoConfig.tiny()` on SST-2 training sentences of 4+ words."
    seed_everything(seed)
    train_sents = [s.split() for s in load_sst2("train").sentence if len(s.split()) >= 4]
    dev_sents = [s.split() for s in load_sst2("dev").sentence]
    vocab = WordVocab(train_sents, max_size=5000)
    lm = ElmoLanguageModel(ElmoConfig.tiny(), len(vocab))
    t = time.process_time()
    hist = train_elmo_lm(lm, vocab, train_sents, dev_sents[:100], steps=steps, batch_size=32, max_len=20, lr=5e-3, eval_every=30, seed=seed)
    return lm.bilm.eval(), dict(val_fwd_ppl=hist.last("val_fwd_ppl"), val_bwd_ppl=hist.last("val_bwd_ppl"), train_cpu_s=time.process_time() - t)

def probe(bilm, layers) -> dict:
    sets = {s: noun_verb_sentences(s) for s in PROBE_SPLITS}
    x = {s: vectors_at(bilm, [t for t, _, _ in d], [p for _, p, _ in d]) for s, d in sets.items()}
    y = {s: torch.tensor([l for _, _, l in d]) for s, d in sets.items()}
    p, table = choose_probe((x["train"], y["train"]), (x["valid"], y["valid"]), layers)
    correct = (p.predict(x["test"]) == y["test"]).numpy()
    lo, hi = word_bootstrap(correct, [t[q] for t, q, _ in sets["test"]])
    return dict(layer="mix" if p.layer is None else p.layer, valid=float(table.valid_accuracy.max()), test=float(correct.mean()), low=lo, high=hi)

def time_notebook() -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN); t = time.perf_counter()
    r = subprocess.run(["nbdev-test", "nbs/03_elmo.ipynb"], cwd=harness.ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dict(ok=r.returncode == 0, wall_s=round(time.perf_counter() - t, 1), cpu_s=round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4"); ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--time-notebook", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    res = dict(parity=parity(), steps=a.steps, runs=[])
    print(res["parity"], flush=True)
    for seed in [int(s) for s in a.seeds.split(",")]:
        bilm, lm = train_bilm(seed, a.steps)
        seed_everything(seed); untrained = ElmoBiLm(ElmoConfig.tiny()).eval()
        run = dict(seed=seed, **lm, contextual=probe(bilm, (None, 1, 2)), static=probe(bilm, (0,)), untrained=probe(untrained, (None, 1, 2)))
        res["runs"].append(run); print(run, flush=True)
    if a.time_notebook: res["notebook"] = time_notebook()
    name = "elmo_results" + ("" if a.steps == 90 else f"_steps{a.steps}")
    harness.record(__file__, name, res)
    p, runs = res["parity"], res["runs"]
    f = lambda r: f"{r['test']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['layer']})"
    spread = lambda k: f"min {min(r[k]['test'] for r in runs):.3f}, mean {np.mean([r[k]['test'] for r in runs]):.3f}, max {max(r[k]['test'] for r in runs):.3f}"
    lines = [f"## Parity and the noun-or-verb probe, biLM trained {a.steps} steps (`elmo_results.py`)", "",
             f"Command: `{harness.command()}`, commit {harness.commit()}.  ", f"Machine: {harness.machine_line()}.", "",
             f"- AllenNLP's test vectors, top layer, {p['sentences']} sentences (stateful, batches of three): max abs difference "
             f"{p['top_max_abs']:.2e}; AllenNLP's criterion `allclose(atol=1e-6, rtol=1e-5)` {'passes' if p['top_allclose_allennlp'] else 'FAILS'}; "
             f"{p['top_over_1e6']} of {p['top_values']:,} values differ by more than 1e-6.",
             f"- Token layer, {p['token_words']} words of `vocab_test.txt` against `elmo_token_embeddings.hdf5`: max abs difference {p['token_max_abs']:.2e}.", "",
             "Noun or verb? Test accuracy on the test words (scored once), 95% bootstrap interval over test words, and the "
             "setting chosen on the valid words (which layers). The static probe is 0.5 by construction.", "",
             "| seed | dev ppl fwd/bwd | biLM CPU s | contextual (ELMo layers) | static (token layer) | untrained biLM (control) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['val_fwd_ppl']:.0f} / {r['val_bwd_ppl']:.0f} | {r['train_cpu_s']:.0f} | {f(r['contextual'])} | {f(r['static'])} | {f(r['untrained'])} |" for r in runs]
    lines += ["", f"Contextual: {spread('contextual')}. Static: {spread('static')}. Untrained control: {spread('untrained')}."]
    if "notebook" in res:
        nbk = res["notebook"]; lines += ["", f"`nbdev-test nbs/03_elmo.ipynb`: {'passes' if nbk['ok'] else 'FAILS'}, {nbk['wall_s']} s wall, {nbk['cpu_s']} s CPU."]
    harness.write_section(__file__, name, "\n".join(lines))

if __name__ == "__main__": main()

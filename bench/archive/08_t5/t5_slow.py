"""Lesson 08's slow run as a script: the tiny T5 on reverse/sort/add + SST-2, exact match per task on held-out data.

python bench/t5_slow.py --steps 12000 --rates "reverse=.2,sort=.15,add=.45,sst2=.2" --eval-every 2000 --threads 1 \
    --out bench/t5_slow_long.json    # the notebook's slow cell (32 min on one CPU thread)
Writes the per-task exact match (1,000 held-out examples per generated task, all 872 SST-2 dev sentences), the training
time and the settings as JSON. Set LLMCOURSE_MIRROR / HF_HUB_OFFLINE=1 as for the tests.
"""
import argparse, json, platform, time

import torch

from llmcourse.core import default_device, seed_everything
from llmcourse.t5 import (GENERATED_TASKS, T5Size, build_t5, exact_match_by_task, generated_examples, mixing_rates,
                          sst2_examples, train_t5, train_t5_tokenizer)

TASKS = tuple(GENERATED_TASKS)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2, help="encoder and decoder blocks each")
    p.add_argument("--time-budget", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--rates", default=None, help='mixing rates instead of examples-proportional with K=20,000, e.g. "reverse=.2,sort=.15,add=.45,sst2=.2"')
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="bench/t5_slow.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = default_device(a.device)
    t0 = time.perf_counter()
    sst_train = sst2_examples("train")
    gen_train = generated_examples(20_000)
    tok = train_t5_tokenizer([t for _, i, o in sst_train + gen_train[::10] for t in (i, o)], vocab_size=1000, extra_ids=20)
    train_by_task = {t: [e for e in gen_train if e[0] == t] for t in TASKS} | {"sst2": sst_train}
    rates = mixing_rates({t: len(v) for t, v in train_by_task.items()}, limit=20_000)
    if a.rates: rates = {t: float(r) for t, r in (kv.split("=") for kv in a.rates.split(","))}
    valid = generated_examples(200, "heldout") + sst2_examples("dev", 200)
    seed_everything(0)
    size = T5Size.tiny(d_model=a.d_model, d_kv=a.d_model // 4, d_ff=4 * a.d_model, num_layers=a.layers, num_decoder_layers=a.layers)
    model = build_t5(size, tok).to(device)
    t1 = time.perf_counter()
    hist = train_t5(model, tok, train_by_task, rates, valid, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                    warmup=a.warmup, eval_every=a.eval_every, time_budget=a.time_budget, verbose=True)
    train_s = time.perf_counter() - t1
    test = generated_examples(1000, "heldout") + sst2_examples("dev")
    em = exact_match_by_task(model, tok, test)
    res = dict(exact_match=em, train_seconds=round(train_s, 1), total_seconds=round(time.perf_counter() - t0, 1),
               final_loss=hist.last("loss"), steps_done=hist.rows[-1]["step"], params=sum(p.numel() for p in model.parameters()), history=[r for r in hist.rows if any(k.startswith("em_") for k in r)],
               settings=vars(a), rates=rates, device=str(device), torch=torch.__version__, machine=platform.processor() or platform.machine(),
               gpu=torch.cuda.get_device_name() if device.type == "cuda" else None)
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=1))
    with open(a.out, "w") as f: json.dump(res, f, indent=1)

if __name__ == "__main__": main()

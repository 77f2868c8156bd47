"""Lesson 12's recipe over several seeds: the test accuracy of every policy, the gains of DPO and GRPO over SFT, and
the spread from seed to seed that the margins of the lesson's and the tests' bounds come from.

Each seed runs the whole pipeline (`train_assistants(AssistantRecipe.quick(seed=s))`, the recipe chosen on the
validation prompts by `choose_recipe.py`), then scores every test prompt once per policy, the validation prompts (for
the notebook's bounds on SFT), and the reward-hacking run of the lesson (GRPO against the reward model without KL).
Seed 0 is the lesson's own run.

    python bench/12_assistant/seeds.py                 # about 3 CPU-minutes per seed

Writes `seeds.json` and the `seeds` section of `RESULTS.md`.
"""
import argparse, copy, dataclasses, statistics, sys, time
from functools import partial
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import torch
from llmcourse.assistant import (ASSISTANT_NAMES, AssistantRecipe, bootstrap_interval, grpo, split_prompts, task_accuracy,
                                 train_assistants)

HACK_LR_FACTOR = 3 # as in the lesson's reward-hacking cell

def sd(xs): return statistics.stdev(xs) if len(xs) > 1 else 0.0

def run_seed(seed:int) -> dict:
    t0 = time.perf_counter()
    a = train_assistants(AssistantRecipe.quick(seed=seed))
    r, tok = a.recipe, a.tok
    test, valid = split_prompts("test", r.max_term), split_prompts("valid", r.max_term)
    reward = partial(a.reward_model.score, tok)
    on_test = {n: task_accuracy(a.policies[n], tok, test, reward, r.max_new_tokens) for n in a.names}
    on_valid = {n: task_accuracy(a.policies[n], tok, valid, reward, r.max_new_tokens) for n in ("sft", "grpo_rm")}
    sft = a.policies["sft"]
    hacker = grpo(copy.deepcopy(sft), sft, tok, reward, dataclasses.replace(r, grpo_lr=HACK_LR_FACTOR * r.grpo_lr), beta=0.0,
                  iters=r.grpo_rm_iters)[0]
    hack = task_accuracy(hacker, tok, valid, reward, r.max_new_tokens)
    out = dict(seed=seed, seconds=round(time.perf_counter() - t0), stage_seconds=a.metrics["seconds"],
               pretrain_val_loss=a.metrics["pretrain_val_loss"], sft_val_loss=a.metrics["sft_val_loss"],
               pairs=a.metrics["pairs"], rm_valid_accuracy=a.metrics["rm_valid_accuracy"],
               sft_valid_accuracy=on_valid["sft"]["accuracy"],
               hack=dict(valid_accuracy=hack["accuracy"], valid_reward=hack["reward"], sft_valid_accuracy=on_valid["sft"]["accuracy"],
                         sft_valid_reward=on_valid["sft"]["reward"]),
               test={n: {k: v for k, v in res.items() if k not in ("correct", "responses")} for n, res in on_test.items()})
    for n in ("dpo", "grpo", "grpo_rm"):
        diff = [float(x) - float(y) for x, y in zip(on_test[n]["correct"], on_test["sft"]["correct"])]
        out["test"][n]["minus_sft"] = sum(diff) / len(diff)
        out["test"][n]["minus_sft_interval"] = bootstrap_interval(diff)
    for n in a.names: out["test"][n]["interval"] = bootstrap_interval(on_test[n]["correct"])
    print(seed, {n: round(v["accuracy"], 3) for n, v in out["test"].items()}, f"{out['seconds']} s", flush=True)
    return out

def main(seeds):
    torch.set_num_threads(1)
    runs = [run_seed(s) for s in seeds]
    test_n = len(split_prompts("test"))
    agg = {}
    for n in ASSISTANT_NAMES:
        xs = [r["test"][n]["accuracy"] for r in runs]
        agg[n] = dict(mean=statistics.mean(xs), sd=sd(xs), min=min(xs), max=max(xs))
    gains = {n: [r["test"][n]["minus_sft"] for r in runs] for n in ("dpo", "grpo", "grpo_rm")}
    for n, xs in gains.items(): agg[n].update(gain_mean=statistics.mean(xs), gain_sd=sd(xs), gain_min=min(xs), gain_max=max(xs))
    scalars = {k: [r[k] for r in runs] for k in ("pretrain_val_loss", "sft_val_loss", "rm_valid_accuracy", "sft_valid_accuracy", "pairs")}
    hack_ok = [r["hack"]["valid_reward"] > r["hack"]["sft_valid_reward"] and r["hack"]["valid_accuracy"] < r["hack"]["sft_valid_accuracy"]
               for r in runs]
    results = dict(seeds=list(seeds), recipe=dataclasses.asdict(AssistantRecipe.quick()), test_prompts=test_n, runs=runs,
                   aggregate=agg, scalars={k: dict(min=min(v), max=max(v), mean=statistics.mean(v), sd=sd(v)) for k, v in scalars.items()},
                   hack_as_the_lesson_asserts=hack_ok)
    harness.record(__file__, "seeds", results)
    def per_seed(n): return " / ".join("%.3f" % r["test"][n]["accuracy"] for r in runs)
    def gain(n):
        g = agg[n]
        return f"{g['gain_mean']:+.3f} ± {g['gain_sd']:.3f} (lowest {g['gain_min']:+.3f})" if "gain_mean" in g else ""
    rows = [f"| {n} | {per_seed(n)} | {agg[n]['mean']:.3f} ± {agg[n]['sd']:.3f} | {gain(n)} |" for n in ASSISTANT_NAMES]
    s0 = runs[0]["test"]
    def diff0(n):
        d = s0[n]
        return f"{d['minus_sft']:+.3f} [{d['minus_sft_interval'][0]:+.3f}, {d['minus_sft_interval'][1]:+.3f}]" if "minus_sft" in d else ""
    lesson = [f"| {n} | {s0[n]['accuracy']:.3f} [{s0[n]['interval'][0]:.3f}, {s0[n]['interval'][1]:.3f}] | {diff0(n)} | "
              f"{s0[n]['polite']:.3f} | {s0[n]['reward']:.2f} |" for n in ASSISTANT_NAMES]
    sc = results["scalars"]
    md = "\n\n".join([
        f"## Test accuracy over seeds\n\n`{harness.command()}` at {harness.commit()}, {sum(r['seconds'] for r in runs)} s on "
        f"{harness.machine_line()}.\n\nThe recipe chosen on the validation prompts (`choose_recipe.py`), seeds "
        f"{', '.join(map(str, seeds))}; every one of the {test_n} test prompts answered greedily, once per policy and seed.",
        "| policy | test accuracy per seed | mean ± sd over seeds | minus SFT, mean ± sd over seeds |\n| --- | --- | --- | --- |\n" + "\n".join(rows),
        f"Seed 0 (the lesson's run), with 95% bootstrap intervals over the test prompts (paired for the difference):\n\n"
        "| policy | test accuracy | minus SFT | polite | reward-model reward |\n| --- | --- | --- | --- | --- |\n" + "\n".join(lesson),
        f"Spread of the other numbers the lesson bounds (min to max over seeds): pretraining validation loss "
        f"{sc['pretrain_val_loss']['min']:.3f} to {sc['pretrain_val_loss']['max']:.3f}; SFT validation accuracy "
        f"{sc['sft_valid_accuracy']['min']:.3f} to {sc['sft_valid_accuracy']['max']:.3f}; reward model's pairwise accuracy on the "
        f"validation pairs {sc['rm_valid_accuracy']['min']:.3f} to {sc['rm_valid_accuracy']['max']:.3f}; pairs "
        f"{sc['pairs']['min']} to {sc['pairs']['max']}. GRPO against the reward model without KL raised the reward and lowered "
        f"the validation accuracy below SFT's in {sum(hack_ok)} of {len(runs)} seeds.",
        f"Seed-to-seed spread of SFT's test accuracy: sd {agg['sft']['sd']:.3f}. GRPO's gain over SFT, "
        f"{agg['grpo']['gain_mean']:+.3f} ± {agg['grpo']['gain_sd']:.3f}, is {agg['grpo']['gain_mean'] / max(agg['sft']['sd'], 1e-9):.1f} "
        f"times that sd; DPO's, {agg['dpo']['gain_mean']:+.3f} ± {agg['dpo']['gain_sd']:.3f}, "
        f"{agg['dpo']['gain_mean'] / max(agg['sft']['sd'], 1e-9):.1f} times."])
    harness.write_section(__file__, "seeds", md)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds of the whole pipeline")
    main(ap.parse_args().seeds)

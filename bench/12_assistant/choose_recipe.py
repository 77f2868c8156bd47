"""Choose lesson 12's recipe on the validation prompts, never looking at the test prompts.

What is chosen, each by the mean over `--seeds` of its score on the *valid* split (`split_prompts("valid")`):
SFT's number of steps (greedy task accuracy), the reward model's learning rate (pairwise accuracy on the labeller's
pairs of validation prompts), DPO's learning rate and NLL weight, GRPO's learning rate, KL weight and number of steps
(greedy task accuracy, among at most `GRPO_STEP_BUDGET` steps, what the lesson's run time allows), and the KL weight of
GRPO against the reward model (greedy task accuracy). The stages are
chosen in pipeline order: each later stage starts from the SFT model of the chosen number of steps.

    python bench/12_assistant/choose_recipe.py            # about 10 CPU-minutes per seed

Writes `choose_recipe.json` and the `choose_recipe` section of `RESULTS.md`. Copy the chosen values into
`AssistantRecipe` (nbs/12_assistant.ipynb), then run `seeds.py` to score the test prompts.
"""
import argparse, copy, dataclasses, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import torch
from llmcourse.assistant import (AssistantRecipe, ChatTokenizer, comparisons, correct_reward, dpo, grpo, pretrain, sft,
                                 split_prompts, task_accuracy, train_reward_model)

SFT_ITERS = (200, 300, 450) # SFT steps
RM_LRS = (1e-4, 3e-4, 1e-3) # the reward model's learning rate
DPO_GRID = [dict(dpo_lr=lr, dpo_nll=nll) for lr in (1e-4, 3e-4) for nll in (0.0, 1.0)]
GRPO_GRID = [dict(grpo_lr=lr, grpo_beta=beta) for lr in (3e-4, 1e-3) for beta in (0.02, 0.1)]
GRPO_STEPS = (40, 80, 120) # GRPO is scored after this many steps of each run
GRPO_STEP_BUDGET = 80 # the most GRPO steps the lesson's run time allows (it runs GRPO three times); more are scored, for the record
GRPO_RM_BETAS = (0.1, 0.5) # KL weights of GRPO against the reward model

def valid_accuracy(model, tok, recipe) -> float:
    return task_accuracy(model, tok, split_prompts("valid", recipe.max_term), max_new_tokens=recipe.max_new_tokens)["accuracy"]

def mean(xs): return sum(xs) / len(xs)

def best(scores:dict) -> str:
    "The candidate with the highest mean score over seeds (the first listed wins a tie)."
    return max(scores, key=lambda k: mean(scores[k]))

def main(seeds):
    torch.set_num_threads(1)
    tok, t0 = ChatTokenizer.for_course(), time.perf_counter()
    base = {s: pretrain(tok, AssistantRecipe.quick(seed=s))[0] for s in seeds}
    # 1. SFT steps
    sft_models, sft_scores = {}, {}
    for n in SFT_ITERS:
        for s in seeds:
            r = AssistantRecipe.quick(seed=s, sft_iters=n)
            sft_models[n, s] = sft(copy.deepcopy(base[s]), tok, r)[0]
            sft_scores.setdefault(str(n), []).append(valid_accuracy(sft_models[n, s], tok, r))
        print("sft", n, sft_scores[str(n)], flush=True)
    sft_iters = int(best(sft_scores))
    recipe = {s: AssistantRecipe.quick(seed=s, sft_iters=sft_iters) for s in seeds}
    ref = {s: sft_models[sft_iters, s] for s in seeds}
    pairs = {s: comparisons(ref[s], tok, recipe[s]) for s in seeds}
    valid_pairs = {s: comparisons(ref[s], tok, recipe[s], "valid") for s in seeds}
    # 2. the reward model's learning rate
    rm_scores, rms = {}, {}
    for lr in RM_LRS:
        for s in seeds:
            rms[lr, s], h = train_reward_model(ref[s], tok, pairs[s], dataclasses.replace(recipe[s], rm_lr=lr), valid_pairs[s])
            rm_scores.setdefault(str(lr), []).append(h.last("valid_accuracy"))
        print("rm", lr, rm_scores[str(lr)], flush=True)
    rm_lr = float(best(rm_scores))
    # 3. DPO
    dpo_scores = {}
    for cfg in DPO_GRID:
        for s in seeds:
            m = dpo(copy.deepcopy(ref[s]), ref[s], tok, pairs[s], dataclasses.replace(recipe[s], **cfg))[0]
            dpo_scores.setdefault(str(cfg), []).append(valid_accuracy(m, tok, recipe[s]))
        print("dpo", cfg, dpo_scores[str(cfg)], flush=True)
    dpo_cfg = DPO_GRID[[str(c) for c in DPO_GRID].index(best(dpo_scores))]
    # 4. GRPO with the checker's reward, scored at several steps of each run
    grpo_scores = {}
    for cfg in GRPO_GRID:
        for s in seeds:
            r = dataclasses.replace(recipe[s], **cfg, grpo_iters=max(GRPO_STEPS))
            def score(step, policy, cfg=cfg, r=r):
                if step in GRPO_STEPS: grpo_scores.setdefault(str(cfg | dict(grpo_iters=step)), []).append(valid_accuracy(policy, tok, r))
            grpo(copy.deepcopy(ref[s]), ref[s], tok, correct_reward, r, callback=score)
        print("grpo", cfg, {k: v for k, v in grpo_scores.items() if str(cfg)[:-1] in k}, flush=True)
    grpo_key = best({k: v for k, v in grpo_scores.items() if int(k.rsplit(": ", 1)[1].rstrip("}")) <= GRPO_STEP_BUDGET})
    grpo_cfg = next(c | dict(grpo_iters=n) for c in GRPO_GRID for n in GRPO_STEPS if str(c | dict(grpo_iters=n)) == grpo_key)
    # 5. the KL weight of GRPO against the reward model (same learning rate as GRPO)
    rm_grpo_scores = {}
    for beta in GRPO_RM_BETAS:
        for s in seeds:
            rm = rms[rm_lr, s]
            r = dataclasses.replace(recipe[s], grpo_lr=grpo_cfg["grpo_lr"])
            m = grpo(copy.deepcopy(ref[s]), ref[s], tok, lambda ps, rs, rm=rm: rm.score(tok, ps, rs), r, beta=beta,
                     iters=r.grpo_rm_iters)[0]
            rm_grpo_scores.setdefault(str(beta), []).append(valid_accuracy(m, tok, r))
        print("grpo_rm", beta, rm_grpo_scores[str(beta)], flush=True)
    grpo_rm_beta = float(best(rm_grpo_scores))
    sft_ref = mean(sft_scores[str(sft_iters)])
    chosen = dict(sft_iters=sft_iters, rm_lr=rm_lr, **dpo_cfg, **grpo_cfg, grpo_rm_beta=grpo_rm_beta)
    results = dict(seeds=list(seeds), chosen=chosen, valid_prompts=len(split_prompts("valid")),
                   pairs={s: len(p) for s, p in pairs.items()}, valid_pairs={s: len(p) for s, p in valid_pairs.items()},
                   sft=sft_scores, reward_model=rm_scores, dpo=dpo_scores, grpo=grpo_scores, grpo_rm=rm_grpo_scores,
                   seconds=round(time.perf_counter() - t0))
    harness.record(__file__, "choose_recipe", results)
    def table(title, scores, pick, unit="greedy accuracy"):
        rows = [f"| {k} | {' / '.join(f'{v:.3f}' for v in vs)} | {mean(vs):.3f}{' **chosen**' if k == pick else ''} |"
                for k, vs in scores.items()]
        return f"{title} ({unit} on the valid prompts, seeds {' / '.join(map(str, seeds))}):\n\n| candidate | per seed | mean |\n| --- | --- | --- |\n" + "\n".join(rows)
    md = "\n\n".join([
        f"## Choosing the recipe on the validation prompts\n\n`{harness.command()}` at {harness.commit()}, "
        f"{results['seconds']} s on {harness.machine_line()}.\n\n{results['valid_prompts']} validation prompts "
        f"(every prompt of the valid split); the test prompts are not read. Chosen: `{chosen}`.",
        table("SFT steps", sft_scores, str(sft_iters)),
        table("Reward model learning rate", rm_scores, str(rm_lr), "pairwise accuracy on the labeller's validation pairs"),
        table("DPO", dpo_scores, str(dpo_cfg)),
        table(f"GRPO with the checker's reward, chosen among runs of at most {GRPO_STEP_BUDGET} steps", grpo_scores, grpo_key),
        table("GRPO against the reward model, KL weight", rm_grpo_scores, str(grpo_rm_beta)),
        f"SFT with the chosen steps scores {sft_ref:.3f} on the same prompts."])
    harness.write_section(__file__, "choose_recipe", md)
    print(chosen)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds whose mean score decides")
    main(ap.parse_args().seeds)

"""Lesson 13's numbers, measured: Bradley-Terry against scikit-learn, the simulated 2023 league and its intervals,
interval coverage over simulated leagues, online Elo's spread over orders, the local SmolLM2 arena, and lesson 12's
assistants ranked by the checker and by their reward model.

    python bench/13_leaderboard/arena_results.py     # a few minutes; lesson 12's assistants come from its cache

Writes `arena_results.json` and the `arena_results` section of `RESULTS.md`.
"""
import argparse, math, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from llmcourse.leaderboard import (ARENA_MAY_2023, Player, arithmetic_prompts, answer_of, bootstrap_bradley_terry,
                                   collect_answers, count_battles, elo_over_orders, fit_bradley_terry, judge_answers,
                                   leaderboard, llama_cpp_player, reward_judge, rule_judge, rule_players, run_arena,
                                   simulate_battles, true_sum)

TRUE = pd.Series(ARENA_MAY_2023, dtype=float)
N_BATTLES = 50_000 # the lesson's simulated league
COVERAGE_LEAGUES, COVERAGE_BATTLES, COVERAGE_ROUNDS = 40, 5000, 100 # as tests/test_leaderboard.py
ORDER_BATTLES, ORDER_ROUNDS, KS = 10_000, 20, (1, 4, 32)
N_PROMPTS, TEMPERATURES = 20, (0.0, 0.7, 1.0) # the lesson's quick local arena
REWARD_TIE_MARGIN = 0.05 # as the lesson

def sklearn_ratings(battles, init=1000.0):
    c = count_battles(battles); m, n = len(c.pairs), len(c.models)
    X = np.zeros((m, n)); X[np.arange(m), c.pairs[:, 0]] = 1; X[np.arange(m), c.pairs[:, 1]] = -1
    lr = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-12, max_iter=10_000)
    lr.fit(np.vstack([X, X]), np.r_[np.ones(m), np.zeros(m)], sample_weight=np.r_[c.counts * c.scores, c.counts * (1 - c.scores)])
    beta = lr.coef_[0] - lr.coef_[0].mean()
    return pd.Series(400 / math.log(10) * beta + init, index=c.models)

def board(t):
    return {m: dict(rating=round(r.rating, 1), lower=round(r.lower, 1), upper=round(r.upper, 1), rank=int(r["rank"])) for m, r in t.iterrows()}

def main(skip_smollm2:bool):
    out, t0 = {}, time.perf_counter()
    sim = simulate_battles(ARENA_MAY_2023, N_BATTLES, seed=0)
    bt = fit_bradley_terry(sim, init_rating=TRUE.mean())
    out["bt_vs_sklearn_max_difference"] = float((bt - sklearn_ratings(sim, TRUE.mean())[bt.index]).abs().max())
    t = leaderboard(sim, rounds=200, init_rating=TRUE.mean(), elo_rounds=20)
    true_order = list(TRUE.sort_values(ascending=False).index)
    out["simulated_league"] = dict(all_inside=bool(((t.lower <= TRUE[t.index]) & (TRUE[t.index] <= t.upper)).all()),
                                   mean_width=float((t.upper - t.lower).mean()), bt_order_true=list(t.index) == true_order,
                                   elo_order_true=list(t.online_elo.sort_values(ascending=False).index) == true_order)
    covered = []
    for seed in range(COVERAGE_LEAGUES):
        b = simulate_battles(ARENA_MAY_2023, COVERAGE_BATTLES, seed=100 + seed)
        boot = bootstrap_bradley_terry(b, rounds=COVERAGE_ROUNDS, seed=seed, init_rating=TRUE.mean())
        lo, hi = boot.quantile(0.025), boot.quantile(0.975)
        covered += ((lo <= TRUE[lo.index]) & (TRUE[lo.index] <= hi)).tolist()
    out["coverage"] = dict(rate=float(np.mean(covered)), intervals=len(covered))
    sub = sim.iloc[:ORDER_BATTLES]
    out["elo_spread_over_orders"] = {k: float(elo_over_orders(sub, k=k, rounds=ORDER_ROUNDS, seed=0, init_rating=TRUE.mean()).std().mean()) for k in KS}
    if not skip_smollm2:
        from llama_cpp import Llama
        from llmcourse.data import smollm2_gguf
        threads = 1 if os.getloadavg()[0] > os.cpu_count() else 2 # as the lesson: one thread on a busy machine
        llm = Llama(model_path=str(smollm2_gguf()), n_ctx=256, n_threads=threads, verbose=False, seed=0)
        players = [llama_cpp_player(f"smollm2-t{x:g}", llm, temperature=x) for x in TEMPERATURES] + rule_players()
        prompts = arithmetic_prompts(N_PROMPTS, seed=0)
        arena, answers = run_arena(players, prompts, rule_judge)
        local, naive = leaderboard(arena, rounds=200, elo_rounds=0, by="prompt"), leaderboard(arena, rounds=200, elo_rounds=0)
        out["local_arena"] = dict(prompts=N_PROMPTS, accuracy={p.name: float(np.mean([answer_of(r) == true_sum(q) for q, r in zip(answers.prompt, answers[p.name])]))
                                                               for p in players},
                                  board=board(local), width_prompts=float((local.upper - local.lower).mean()),
                                  width_battles=float((naive.upper - naive.lower).mean()))
    from llmcourse.assistant import quick_assistants, is_correct, task_answer, split_prompts
    a = quick_assistants()
    prompts12 = split_prompts("test", a.recipe.max_term)
    players12 = [Player(n, dict(zip(prompts12, a.respond_many(n, prompts12))).__getitem__) for n in a.names]
    answers12 = collect_answers(players12 + [Player("calculator", task_answer)], prompts12)
    def correctness_judge(q, x, y):
        ok_x, ok_y = is_correct(q, x), is_correct(q, y)
        return "tie" if ok_x == ok_y else ("model_a" if ok_x else "model_b")
    rewards = {(q, r): v for n in answers12.columns[1:] for q, r, v in zip(answers12.prompt, answers12[n], a.rewards(list(answers12.prompt), list(answers12[n])))}
    by_rule = judge_answers(answers12, correctness_judge)
    by_reward = judge_answers(answers12, reward_judge(lambda q, r: rewards[(q, r)], margin=REWARD_TIE_MARGIN))
    acc = pd.Series({n: float(np.mean([is_correct(q, r) for q, r in zip(answers12.prompt, answers12[n])])) for n in answers12.columns[1:]})
    b_rule, b_reward = (leaderboard(b, rounds=200, elo_rounds=0, by="prompt") for b in (by_rule, by_reward))
    out["lesson12_arena"] = dict(prompts=len(prompts12), accuracy=acc.round(4).to_dict(), checker=board(b_rule), reward_model=board(b_reward),
                                 agreement=float(np.mean(by_rule.winner == by_reward.winner)),
                                 checker_vs_accuracy_spearman=float(b_rule.rating.corr(acc[b_rule.index], method="spearman")))
    out["seconds"] = round(time.perf_counter() - t0)
    harness.record(__file__, "arena_results", out)
    def table(bd, acc=None):
        head = "| player | rating [95% interval] | rank |" + (" test accuracy |" if acc is not None else "")
        rows = [f"| {m} | {v['rating']:.0f} [{v['lower']:.0f}, {v['upper']:.0f}] | {v['rank']} |" + (f" {acc[m]:.3f} |" if acc is not None else "")
                for m, v in bd.items()]
        return head + "\n|" + " --- |" * (4 if acc is not None else 3) + "\n" + "\n".join(rows)
    sl, cov, l12 = out["simulated_league"], out["coverage"], out["lesson12_arena"]
    parts = [f"## Lesson 13's numbers\n\n`{harness.command()}` at {harness.commit()}, {out['seconds']} s on {harness.machine_line()}.",
             f"- Bradley-Terry (Newton) against scikit-learn's unpenalised logistic regression on {N_BATTLES:,} simulated battles: "
             f"largest difference {out['bt_vs_sklearn_max_difference']:.1e} rating points.\n"
             f"- The simulated May 2023 league ({N_BATTLES:,} battles): every true rating inside its 95% interval: {sl['all_inside']}; "
             f"mean interval width {sl['mean_width']:.1f} points; Bradley-Terry order is the true order: {sl['bt_order_true']}; "
             f"online Elo (median of 20 orders, K = 4) too: {sl['elo_order_true']}.\n"
             f"- Coverage of the 95% intervals over {COVERAGE_LEAGUES} simulated leagues of {COVERAGE_BATTLES:,} battles "
             f"({cov['intervals']} intervals): {cov['rate']:.3f}.\n"
             f"- Online Elo on {ORDER_BATTLES:,} battles, standard deviation over {ORDER_ROUNDS} orders (mean over models): "
             + ", ".join(f"K = {k}: {v:.1f}" for k, v in out["elo_spread_over_orders"].items()) + " points."]
    if "local_arena" in out:
        la = out["local_arena"]
        parts.append(f"Local arena, {la['prompts']} additions, rule judge, prompts resampled (accuracy: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in la["accuracy"].items()) + "):\n\n" + table(la["board"])
                     + f"\n\nMean interval width resampling prompts {la['width_prompts']:.0f} points, resampling single battles "
                     f"{la['width_battles']:.0f}.")
    parts.append(f"Lesson 12's assistants on its {l12['prompts']} test prompts, judged by the checker:\n\n{table(l12['checker'], l12['accuracy'])}"
                 f"\n\nJudged by the reward model:\n\n{table(l12['reward_model'], l12['accuracy'])}\n\nThe judges agree on "
                 f"{l12['agreement']:.0%} of the battles; the checker's ratings against the test accuracies: Spearman "
                 f"{l12['checker_vs_accuracy_spearman']:.2f}.")
    harness.write_section(__file__, "arena_results", "\n\n".join(parts))

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-smollm2", action="store_true", help="leave out the local SmolLM2 arena (the slow part)")
    main(ap.parse_args().skip_smollm2)

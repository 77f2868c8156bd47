#!/usr/bin/env python
"""A load test of `llmcourse serve` (lesson 14): 64 concurrent streaming clients for 60 s, a quarter of them hanging up
at a random point of every answer.

The server runs in its own process (`serve_cli`, the shipped models, default settings). Each client streams chat
completions one after another (max_tokens drawn from 8 to 32); the 16 clients that hang up close each stream after a
random number of pieces. A probe asks `/health` every second. Reported: requests completed, errors by status, p50/p95
latency of completed requests (sent -> [DONE]), /health answers and its slowest answer, the server's RSS when it is
ready and when the load ends, and "lost" responses: streams of clients that did not hang up which ended without
`[DONE]` and a finish reason. The server must stay up, answer every health check, lose nothing, serve no 5xx, and its
RSS must grow by less than 20%.

Usage: python bench/14_serve/load_test.py [--clients 64] [--seconds 60] [--quick]
Writes bench/14_serve/load_test.json and its section of bench/14_serve/RESULTS.md.
"""
import argparse, asyncio, collections, json, os, random, subprocess, sys, time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness
sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import start_server

HANG_UP_SHARE = 0.25 # the share of clients that close every stream early
MAX_TOKENS = (8, 32) # each answer's max_tokens, drawn uniformly
RSS_GROWTH_LIMIT = 0.20 # the acceptance: RSS at the end at most 20% above RSS when ready
SEED = 0 # for the clients' choices
QUESTIONS = ["Name a colour.", "What is two plus two?", "Say hello in French.", "Give me a word that rhymes with cat.",
             "What is the capital of Italy?", "Count to five.", "Name an animal that can fly.", "What day comes after Monday?"]



async def client(http, url, i, hangs_up, deadline, rng, log):
    "Stream chat answers until `deadline`; log one record per request."
    while time.monotonic() < deadline:
        body = {"model": "smollm2-135m-instruct", "stream": True, "temperature": 0.7, "seed": rng.randrange(10**6),
                "max_tokens": rng.randint(*MAX_TOKENS), "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}]}
        stop_after = rng.randint(1, 6) if hangs_up else None
        t0, rec = time.monotonic(), dict(client=i, hangs_up=hangs_up)
        try:
            async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                rec["status"] = r.status_code
                if r.status_code != 200: await r.aread(); log.append(rec); continue
                pieces, done, finish = 0, False, None
                async for line in r.aiter_lines():
                    if not line.startswith("data: "): continue
                    if line == "data: [DONE]": done = True; break
                    event = json.loads(line[6:])
                    if "error" in event: rec["stream_error"] = event["error"].get("code"); continue
                    choice = event["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    if choice["delta"].get("content"): pieces += 1
                    if stop_after is not None and pieces >= stop_after: break # hang up: the context manager closes it
                rec.update(done=done, finish=finish, pieces=pieces, hung_up=stop_after is not None and not done)
        except httpx.HTTPError as e: rec.update(status=f"transport: {type(e).__name__}")
        rec["seconds"] = time.monotonic() - t0
        log.append(rec)


async def probe(url, deadline, out):
    "Ask /health every second until `deadline`: (seconds it took, ok) each time."
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try: ok = (await http.get(f"{url}/health")).status_code == 200
            except httpx.HTTPError: ok = False
            out.append((time.monotonic() - t0, ok))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))


async def load(url, n_clients, seconds):
    rng = random.Random(SEED)
    hangers = set(rng.sample(range(n_clients), round(HANG_UP_SHARE * n_clients)))
    log, checks, deadline = [], [], time.monotonic() + seconds
    limits = httpx.Limits(max_connections=n_clients + 8, max_keepalive_connections=n_clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30), limits=limits) as http:
        await asyncio.gather(probe(url, deadline, checks),
                             *[client(http, url, i, i in hangers, deadline, random.Random(SEED * 1000 + i), log)
                               for i in range(n_clients)])
    return log, checks, len(hangers)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=64, help="concurrent streaming clients")
    p.add_argument("--seconds", type=float, default=60, help="how long clients keep sending (the last answers finish after)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the server's models")
    p.add_argument("--quick", action="store_true", help="8 clients for 10 s: a smoke run, not the load test")
    a = p.parse_args(argv)
    if a.quick: a.clients, a.seconds = 8, 10
    load_before = os.getloadavg()
    proc, url = start_server(a.threads)
    server = psutil.Process(proc.pid)
    try:
        rss_ready = server.memory_info().rss
        t0 = time.monotonic()
        log, checks, n_hangers = asyncio.run(load(url, a.clients, a.seconds))
        wall = time.monotonic() - t0
        rss_end = server.memory_info().rss
        alive = proc.poll() is None
        health = httpx.get(f"{url}/health", timeout=10).json() if alive else {}
    finally:
        proc.terminate(); proc.wait(60)
    completed = [r for r in log if r.get("done") and r.get("finish") in ("stop", "length")]
    lost = [r for r in log if not r["hangs_up"] and r.get("status") == 200 and not (r.get("done") and r.get("finish"))]
    errors = collections.Counter(str(r["status"]) for r in log if r.get("status") != 200)
    stream_errors = collections.Counter(r["stream_error"] for r in log if r.get("stream_error"))
    lat = [r["seconds"] for r in completed]
    fivexx = sum(n for s, n in errors.items() if s.startswith("5"))
    growth = rss_end / rss_ready - 1
    results = dict(clients=a.clients, seconds=a.seconds, wall_seconds=round(wall, 1), clients_hanging_up=n_hangers,
                   threads=a.threads, load_average_before=[round(x, 2) for x in load_before],
                   requests=len(log), completed=len(completed), hung_up=sum(bool(r.get("hung_up")) for r in log),
                   errors_by_status=dict(errors), errors_in_streams=dict(stream_errors), lost=len(lost),
                   latency_p50_s=round(float(np.percentile(lat, 50)), 2) if lat else None,
                   latency_p95_s=round(float(np.percentile(lat, 95)), 2) if lat else None,
                   health_checks=len(checks), health_failures=sum(not ok for _, ok in checks),
                   health_slowest_s=round(max(t for t, _ in checks), 3) if checks else None,
                   server_alive_at_end=alive, rss_ready_mb=round(rss_ready / 2**20, 1), rss_end_mb=round(rss_end / 2**20, 1),
                   rss_growth=round(growth, 4), server_stats={k: health.get(k) for k in ("responses_completed", "streams_cut_off", "streams_open")},
                   quick=a.quick)
    ok = alive and not lost and not fivexx and growth < RSS_GROWTH_LIMIT and not results["health_failures"]
    results["acceptance_met"] = bool(ok)
    at = harness.commit() # before the JSON is written, which would make the checkout dirty
    harness.record(__file__, "load_test", results)
    md = [f"`{harness.command()}` at {at}", "", harness.machine_line(), "",
          f"Load average when it started: {results['load_average_before']}. {a.clients} streaming chat clients for "
          f"{a.seconds:g} s ({n_hangers} of them hang up after 1-6 pieces of every answer), max_tokens {MAX_TOKENS[0]}-"
          f"{MAX_TOKENS[1]}, the server with the shipped models and default settings ({a.threads} thread(s)).", "",
          "| what | value |", "|---|---|",
          f"| requests sent | {len(log)} |", f"| completed ([DONE] and a finish reason) | {len(completed)} |",
          f"| hung up by their client | {results['hung_up']} |",
          f"| errors by status | {dict(errors) or 'none'} |", f"| errors inside streams | {dict(stream_errors) or 'none'} |",
          f"| lost (a client that stayed got no [DONE]) | {len(lost)} |",
          f"| latency of completed requests, p50 / p95 | {results['latency_p50_s']} s / {results['latency_p95_s']} s |",
          f"| /health checks (failed), slowest | {len(checks)} ({results['health_failures']}), {results['health_slowest_s']} s |",
          f"| server RSS when ready -> at the end | {results['rss_ready_mb']} MB -> {results['rss_end_mb']} MB ({100*growth:+.1f}%) |",
          f"| server's own count: completed, cut off, still open | {results['server_stats']} |", "",
          f"Acceptance (up throughout, every health check answered, nothing lost, no 5xx, RSS growth under "
          f"{RSS_GROWTH_LIMIT:.0%}): {'met' if ok else 'NOT met'}."]
    harness.write_section(__file__, "load_test", "\n".join(md))
    print("\n".join(md))
    return 0 if ok else 1


if __name__ == "__main__": sys.exit(main())

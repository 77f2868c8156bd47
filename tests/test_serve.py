"""Lesson 14's server and its engine: the OpenAI API against the official `openai` client, continuous batching against
lesson 11's one-request `generate`, and the server under abuse (fuzzed bodies, headers and uploads, size and time
limits, caps, a full waiting line, the key, paths and the address it listens on).

Two servers: the shipped models in a subprocess started through `serve_cli` (the code behind `llmcourse serve`), and a
tiny random Llama written as a GGUF file (lesson 11's `save_gguf`) for the tests that need many requests fast.
References: lesson 11's `generate` (greedy decoding of one request), llama-cpp-python's chat formatter and tokenizer,
transformers' own BERT (mean-pooled), the FSDD labels (the digits spoken), the `openai` package's exceptions.
"""
import hashlib, io, json, os, re, socket, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import psutil
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.testclient import TestClient

from llmcourse.batching import (BatchedChat, ContinuousBatcher, PagedKVCache, SamplingParams, load_chat_llama,
                                llama_generate)
from llmcourse.core import asset_path
from llmcourse.data import load_fsdd, minilm_dir, smollm2_gguf, wav_bytes
from llmcourse.serve import BackgroundServer, ModelSpec, ServeConfig, free_port, make_app, serve_cli

CONFIG = asset_path("serve", "models.yaml")
KEY = "sk-test-llmcourse"
CHAT, EMBED, WHISPER = "smollm2-135m-instruct", "all-minilm-l6-v2", "whisper-tiny.en"
AUTH = {"Authorization": f"Bearer {KEY}"}
ERROR_FIELDS = {"message", "type", "param", "code"}


def start_server(args, env=None, timeout=300):
    "`serve_cli(args)` in a subprocess; (process, base URL) once /health answers."
    port = free_port()
    code = "import sys; from llmcourse.serve import serve_cli; sys.exit(serve_cli(sys.argv[1:]))"
    env = dict(os.environ, LLMCOURSE_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(env or {}))
    env.pop("LLMCOURSE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, t0 = f"http://127.0.0.1:{port}", time.time()
    while True:
        if proc.poll() is not None: pytest.fail(f"the server exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200: return proc, url
        except httpx.TransportError: pass
        if time.time() - t0 > timeout: proc.kill(); pytest.fail(f"the server did not start in {timeout} s")
        time.sleep(0.2)


def stop_server(proc):
    proc.terminate()
    try: proc.wait(30)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()


@pytest.fixture(scope="module")
def server():
    "The shipped models behind a live server in a subprocess, with an API key."
    proc, url = start_server(["--config", str(CONFIG), "--host", "127.0.0.1", "--api-key", KEY, "--threads", "1"])
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def smol():
    "Lesson 11's model and tokenizer on the shipped SmolLM2 GGUF (the reference decoder runs on it)."
    model, tok, template = load_chat_llama(smollm2_gguf())
    return model, tok, template


def generate_text(smol, ids, n):
    "What lesson 11's `generate` writes after prompt `ids`, greedy, in `n` tokens, as token ids."
    model, _, _ = smol
    with torch.inference_mode(): return llama_generate(model, torch.tensor([ids]), n)[0, len(ids):].tolist()


def until_end(tok, ids):
    "`ids` cut before the first end-of-turn token (where the engine stops)."
    ends = {i for i, t in enumerate(tok.tokens) if t in ("<|endoftext|>", "<|im_end|>")}
    return ids[:next((k for k, t in enumerate(ids) if t in ends), len(ids))]


def health(url): return httpx.get(f"{url}/health", timeout=10).json()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A folder holding tiny.gguf (a random 2-layer Llama with a BPE trained on a line of text) and a home for caches."
    from llmcourse.llama import Llama, LlamaConfig
    from llmcourse.gguf_io import GGUFTokenizer, save_gguf
    from llmcourse.tokenizers import BPETokenizer
    d = tmp_path_factory.mktemp("tiny")
    tok = GGUFTokenizer.from_bpe(BPETokenizer.train("hello world, the quick brown fox jumps over the lazy dog. " * 20, 256 + 32))
    torch.manual_seed(0)
    save_gguf(Llama(LlamaConfig.tiny(vocab_size=tok.vocab_size)), tok, d/"tiny.gguf", "F32")
    return d


def tiny_config(folder, **kw):
    "A config serving tiny.gguf as `tiny` (alias gpt-4o-mini) next to the shipped MiniLM and Whisper."
    chat = dict(max_tokens=4, max_tokens_limit=8, n_ctx=256, kv_cache_tokens=2048) | kw.pop("chat", {})
    return ServeConfig(models=[ModelSpec("tiny", "chat", "tiny.gguf", aliases=["gpt-4o-mini"], **chat),
                               ModelSpec(EMBED, "embedding", "shipped:minilm"),
                               ModelSpec(WHISPER, "transcription", "shipped:whisper_tiny_en")],
                       api_key=KEY, threads=1, base_dir=str(folder), **kw)


def is_openai_error(r) -> bool:
    "True when `r` is an error response in OpenAI's shape."
    body = r.json()
    return set(body) == {"error"} and set(body["error"]) == ERROR_FIELDS and isinstance(body["error"]["message"], str)


# ---- /v1/models, the key ------------------------------------------------------------------------------------------

def test_models_lists_config_names_and_aliases(client):
    ids = {m.id for m in client.models.list()}
    assert {CHAT, EMBED, WHISPER, "gpt-4o-mini", "text-embedding-3-small", "whisper-1"} <= ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError): client.models.retrieve("no-such-model")


def test_api_key_required(server):
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"},
                    {"Authorization": f"Bearer {KEY[:-1]}"}):
        r = httpx.get(f"{server}/v1/models", headers=headers, timeout=10)
        assert r.status_code == 401, headers
        err = r.json()["error"]
        assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error" and err["message"]
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def test_api_key_is_compared_in_constant_time(tiny, monkeypatch):
    "Every key check goes through hmac.compare_digest on two digests of equal length, whatever the key sent."
    import llmcourse.serve as S
    calls, real = [], S.hmac.compare_digest
    monkeypatch.setattr(S.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    with TestClient(make_app(tiny_config(tiny, preload=False))) as tc:
        for sent in ("x", KEY[:-1], KEY + "x", "k" * 500, KEY):
            status = tc.get("/v1/models", headers={"Authorization": f"Bearer {sent}"}).status_code
            assert status == (200 if sent == KEY else 401), sent
    assert len(calls) == 5 and all(len(a) == len(b) == 32 for a, b in calls)


# ---- continuous batching: the engine against lesson 11's generate --------------------------------------------------

PROMPTS = ["The capital of France is", "1, 2, 3, 4, 5,", "Once upon a time", "def fibonacci(n):"]

def test_engine_greedy_equals_generate_at_four_concurrent_requests(smol):
    "Four requests submitted from four threads while the engine runs: each answer is lesson 11's, token for token."
    model, tok, _ = smol
    n = 16
    want = [generate_text(smol, tok.encode(p), n) for p in PROMPTS]
    engine = ContinuousBatcher(model, tok, max_batch=8, kv_cache_tokens=1024, end_ids=set()).start()
    try:
        def submit(p):
            time.sleep(0.05 * PROMPTS.index(p)) # arrivals spread over the first steps
            return engine.submit(tok.encode(p), SamplingParams(max_tokens=n))
        with ThreadPoolExecutor(4) as ex: requests = list(ex.map(submit, PROMPTS))
        for r in requests: assert r.done.wait(300)
    finally: engine.stop()
    assert max(len(ids) for _, ids in engine.trace) > 1, "the requests were never decoded together"
    for p, r, w in zip(PROMPTS, requests, want): assert r.tokens == w, p
    assert len(engine.cache.free) == engine.cache.n_blocks # every block came back


def test_finished_requests_leave_at_once_and_waiting_ones_take_their_place(smol):
    "Batch of 2: a short and a long answer; the third request joins the step after the short one ends, not after the long."
    model, tok, _ = smol
    engine = ContinuousBatcher(model, tok, max_batch=2, kv_cache_tokens=1024, end_ids=set())
    short, long_ = (engine.submit(tok.encode(p), SamplingParams(max_tokens=m)) for p, m in ((PROMPTS[0], 3), (PROMPTS[1], 8)))
    third = engine.submit(tok.encode(PROMPTS[2]), SamplingParams(max_tokens=3))
    engine.run()
    rows = [set(ids) for _, ids in engine.trace]
    short_last = max(i for i, s in enumerate(rows) if short.id in s)
    third_first = min(i for i, s in enumerate(rows) if third.id in s)
    assert third_first == short_last + 1 and long_.id in rows[third_first]
    assert max(map(len, rows)) == 2 and [len(r.tokens) for r in (short, long_, third)] == [3, 8, 3]


def test_run_answers_every_request_when_the_batch_empties(smol):
    "One row, three requests: `run()` goes on after each answer ends while others still wait, until all are answered."
    model, tok, _ = smol
    engine = ContinuousBatcher(model, tok, max_batch=1, kv_cache_tokens=1024, end_ids=set())
    rs = [engine.submit(tok.encode(p), SamplingParams(max_tokens=3)) for p in PROMPTS[:3]] # each answer outlives its first step
    engine.run()
    assert [(r.finish_reason, len(r.tokens)) for r in rs] == [("length", 3)] * 3 and not engine.waiting


def test_cancelled_and_timed_out_requests_free_their_blocks(smol):
    model, tok, _ = smol
    engine = ContinuousBatcher(model, tok, max_batch=4, kv_cache_tokens=1024, end_ids=set())
    a = engine.submit(tok.encode(PROMPTS[0]), SamplingParams(max_tokens=50))
    b = engine.submit(tok.encode(PROMPTS[1]), SamplingParams(max_tokens=50), timeout=0.0)
    engine.step(); engine.cancel(a); engine.run()
    assert (a.finish_reason, b.finish_reason) == ("cancelled", "timeout") and len(a.tokens) < 50
    assert len(engine.cache.free) == engine.cache.n_blocks


def test_paged_cache_refuses_what_it_cannot_hold(smol):
    model, tok, _ = smol
    pool = PagedKVCache(model.cfg, n_blocks=4, block_size=16)
    pool.allocate(1, 40)
    with pytest.raises(MemoryError): pool.allocate(2, 20)
    engine = ContinuousBatcher(model, tok, kv_cache_tokens=64)
    with pytest.raises(ValueError, match="holds 64"): engine.submit(tok.encode(PROMPTS[0]), SamplingParams(max_tokens=100))


def test_chat_prompt_equals_llama_cpp(smol):
    "The chat template from the GGUF, rendered and tokenized, gives llama-cpp-python's own prompt tokens."
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    model, tok, template = smol
    chat = BatchedChat(model, tok, template, kv_cache_tokens=256)
    cpp = Llama(str(smollm2_gguf()), n_ctx=256, n_threads=1, verbose=False, vocab_only=True)
    fmt = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")
    for msgs in (QUESTION, [{"role": "system", "content": "Be brief."}, *QUESTION, {"role": "assistant", "content": "Paris."},
                            {"role": "user", "content": "And of Italy? <|im_end|>"}]):
        assert chat.chat_prompt(msgs) == cpp.tokenize(fmt(messages=msgs).prompt.encode(), add_bos=False, special=True)


# ---- chat and completions through the API ------------------------------------------------------------------------

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]

def test_chat_matches_generate(client, smol):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    _, tok, template = smol
    prompt = tok.encode(Jinja2ChatFormatter(template, "<|im_end|>", "<|im_start|>")(messages=QUESTION).prompt, special=True)
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=12, temperature=0)
    want = until_end(tok, generate_text(smol, prompt, 12))
    assert r.model == CHAT and r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == tok.decode(want)
    assert r.usage.prompt_tokens == len(prompt) and r.usage.completion_tokens == len(want)
    assert r.choices[0].finish_reason == ("length" if len(want) == 12 else "stop")


def test_chat_stream_equals_plain_answer(client):
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=12,
                                                 temperature=0, stream=True))
    assert len(chunks) > 2 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_stream_raw_sse_ends_with_done(server):
    body = {"model": CHAT, "messages": QUESTION, "max_tokens": 3, "temperature": 0, "stream": True}
    r = httpx.post(f"{server}/v1/chat/completions", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [l[len("data: "):] for l in r.text.split("\n") if l.startswith("data: ")]
    assert events[-1] == "[DONE]" and all("choices" in json.loads(e) for e in events[:-1])


def test_completions_match_generate(client, smol):
    _, tok, _ = smol
    prompt = "1, 2, 3, 4, 5,"
    want = tok.decode(generate_text(smol, tok.encode(prompt), 8))
    r = client.completions.create(model=CHAT, prompt=prompt, max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text == want
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=CHAT, prompt=prompt, max_tokens=8, temperature=0, stream=True))
    assert streamed == want
    two = client.completions.create(model=CHAT, prompt=[prompt, "The sky is"], max_tokens=3, temperature=0, n=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]
    assert two.choices[0].text == two.choices[1].text == want[:len(two.choices[0].text)]
    echo = client.completions.create(model=CHAT, prompt=prompt, max_tokens=3, temperature=0, echo=True)
    assert echo.choices[0].text.startswith(prompt + want[:2])


def test_four_concurrent_api_requests_equal_generate(client, smol):
    "The acceptance check through HTTP: four clients at once, streaming and not, get lesson 11's greedy answers."
    _, tok, _ = smol
    want = [tok.decode(generate_text(smol, tok.encode(p), 16)) for p in PROMPTS]
    def ask(i):
        kw = dict(model=CHAT, prompt=PROMPTS[i], max_tokens=16, temperature=0)
        if i % 2: return "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw))
        return client.completions.create(**kw).choices[0].text
    with ThreadPoolExecutor(4) as ex: got = list(ex.map(ask, range(4)))
    for g, w in zip(got, want): assert w.startswith(g) and len(g) > 0, (g, w) # the same text, cut where an end token came


def test_seeded_sampling_repeats(client):
    kw = dict(model=CHAT, prompt="My favourite colour is", max_tokens=8, temperature=1.0, seed=1234)
    a, b = (client.completions.create(**kw).choices[0].text for _ in range(2))
    assert a == b


# ---- embeddings --------------------------------------------------------------------------------------------------

SENTENCES = ["A cat sits on the mat.", "A kitten rests on a rug.", "Shares dropped at the opening bell.",
             "An utterly different sentence, rather longer than the others, to make the batch need padding."]

def test_embeddings_match_transformers(client, server):
    from transformers import AutoModel, AutoTokenizer
    t, m = AutoTokenizer.from_pretrained(str(minilm_dir())), AutoModel.from_pretrained(str(minilm_dir())).eval()
    b = t(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode(): h = m(**b).last_hidden_state
    mask = b["attention_mask"][..., None].float()
    ref = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    r = client.embeddings.create(model=EMBED, input=SENTENCES) # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in r.data])
    assert got.shape == (4, 384) and [d.index for d in r.data] == [0, 1, 2, 3]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert r.usage.prompt_tokens == int(b["attention_mask"].sum()) and r.model == EMBED
    raw = httpx.post(f"{server}/v1/embeddings", json={"model": "text-embedding-3-small", "input": SENTENCES[0],
                     "encoding_format": "float"}, headers=AUTH, timeout=60).json()
    np.testing.assert_allclose(raw["data"][0]["embedding"], ref[0], atol=1e-5)


def test_embeddings_bad_input(client):
    for kw in (dict(input=[1, 2, 3]), dict(input=""), dict(input=["ok"], dimensions=64), dict(input=["x"] * 2049)):
        with pytest.raises(openai.BadRequestError): client.embeddings.create(model=EMBED, **kw)


# ---- transcriptions ----------------------------------------------------------------------------------------------

DIGITS = [3, 1, 4, 1, 5, 9]
WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine".split())}

@pytest.fixture(scope="module")
def spoken_digits():
    "Six FSDD recordings (speaker jackson, take 0, 8 kHz) joined with 0.3 s pauses, as a WAV file."
    ds = load_fsdd(); f = ds.frame
    clips = [ds[f.index[(f.speaker == "jackson") & (f.digit == d) & (f["take"] == 0)][0]] for d in DIGITS]
    pause = np.zeros(2400, np.float32)
    return wav_bytes(np.concatenate([x for c in clips for x in (c.audio, pause)]), clips[0].sample_rate)


def test_transcription_of_spoken_digits(client, spoken_digits):
    t = client.audio.transcriptions.create(model=WHISPER, file=("digits.wav", spoken_digits, "audio/wav"))
    heard = [WORDS.get(w, w) for w in re.findall(r"[a-z]+|\d", t.text.lower())]
    assert heard == [str(d) for d in DIGITS], t.text
    text = client.audio.transcriptions.create(model="whisper-1", file=("d.wav", spoken_digits), response_format="text")
    assert isinstance(text, str) and text.strip() == t.text.strip()
    v = client.audio.transcriptions.create(model=WHISPER, file=("d.wav", spoken_digits), response_format="verbose_json")
    assert v.language == "en" and abs(v.duration - len(spoken_digits) / 2 / 8000) < 0.01


def test_transcription_bad_uploads(client, server):
    tone = np.sin(2 * np.pi * 300 * np.arange(4000) / 4000).astype(np.float32)
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model=WHISPER, file=("low.wav", wav_bytes(tone, 4000), "audio/wav"))
    assert e.value.code == "invalid_audio" and "4000 Hz" in e.value.message
    for junk in (b"this is a text file, not audio" * 20, bytes(range(256)) * 40, b""):
        with pytest.raises(openai.BadRequestError) as e:
            client.audio.transcriptions.create(model=WHISPER, file=("notes.wav", junk, "audio/wav"))
        assert e.value.code == "invalid_audio"
    with pytest.raises(openai.BadRequestError): # a chat model cannot transcribe
        client.audio.transcriptions.create(model=CHAT, file=("low.wav", wav_bytes(tone, 4000)))
    r = httpx.post(f"{server}/v1/audio/transcriptions", data={"model": WHISPER}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "file" # no file at all


# ---- bad requests ------------------------------------------------------------------------------------------------

def test_malformed_json_is_400(server):
    h = {**AUTH, "Content-Type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        r = httpx.post(f"{server}{path}", content=b'{"model": "smollm2-135m-instruct", "messages": [', headers=h)
        assert r.status_code == 400, (path, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json" and "JSON" in err["message"]
    for body, headers in ((b"[1, 2]", h), (b"", h), (b'{"model": "x"}', AUTH)):
        r = httpx.post(f"{server}/v1/chat/completions", content=body, headers=headers) # not a JSON object
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", (body, r.text)
    r = httpx.post(f"{server}/v1/chat/completions", json={"model": CHAT}, headers=h) # valid JSON, no messages
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(f"{server}/v1/chat/completions", headers=h, json={"model": CHAT, "temperature": 7,
                                                                     "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=QUESTION, max_tokens=2)
    assert e.value.code == "model_not_found" and "gpt-9" in e.value.message
    with pytest.raises(openai.NotFoundError): client.completions.create(model="gpt-9", prompt="x", max_tokens=2)
    with pytest.raises(openai.NotFoundError): client.embeddings.create(model="gpt-9", input="x")
    with pytest.raises(openai.BadRequestError) as e: # exists, but is not a chat model
        client.chat.completions.create(model=EMBED, messages=QUESTION, max_tokens=2)
    assert e.value.code == "model_not_supported"


def test_prompt_past_context_is_400(client, server):
    long = "hello " * 3000 # about 3000 tokens; n_ctx is 2048
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": long}], max_tokens=4,
                                           stream=stream)
        assert e.value.code == "context_length_exceeded" and "2048" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=CHAT, prompt=long, max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=2) # and it still serves
    assert r.choices[0].message.content is not None
    assert not health(server)["models"][CHAT]["busy"]


def test_caps_on_max_tokens_and_n(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=5000)
    assert e.value.param == "max_tokens" and "1024" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=CHAT, prompt="x", n=5, max_tokens=2)
    assert e.value.param == "n" and "at most 4" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=CHAT, prompt=["x"] * 9, n=4, max_tokens=2)
    assert e.value.param == "prompt"
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=2, n=4, temperature=0)
    assert len(r.choices) == 4 and len({c.message.content for c in r.choices}) == 1


# ---- concurrency and disconnects ---------------------------------------------------------------------------------

def test_sixteen_concurrent_requests(client, server):
    def ask(i):
        if i % 4 == 3: return len(client.embeddings.create(model=EMBED, input=[f"text {i}"]).data[0].embedding)
        return client.chat.completions.create(model=CHAT, max_tokens=4, temperature=0,
                                              messages=[{"role": "user", "content": f"Count to {i}."}]).choices[0]
    with ThreadPoolExecutor(16) as ex:
        futures = [ex.submit(ask, i) for i in range(16)]
        time.sleep(0.5)
        t0 = time.time(); h = health(server); waited = time.time() - t0 # the event loop stays free meanwhile
        results = [f.result(timeout=300) for f in futures]
    assert sum(r == 384 for r in results) == 4
    assert all(r.message.content is not None for r in results if r != 384)
    assert h["status"] == "ok" and waited < 5


def test_client_disconnect_mid_stream(client, server):
    before = health(server)["streams_cut_off"]
    stream = client.completions.create(model=CHAT, prompt="1, 2, 3, 4, 5,", max_tokens=1000, temperature=0, stream=True)
    got = []
    for chunk in stream:
        got.append(chunk.choices[0].text)
        if len(got) == 3: break
    stream.close() # hang up after three pieces
    t0 = time.time()
    while True:
        h = health(server)
        if h["streams_open"] == 0 and not h["models"][CHAT]["busy"]: break
        assert time.time() - t0 < 30, f"the answer was not stopped after the client left: {h}"
        time.sleep(0.1)
    assert h["streams_cut_off"] == before + 1
    assert h["models"][CHAT]["free_kv_blocks"] == ServeConfig.shipped().models[0].kv_cache_tokens // 16
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=3)
    assert r.choices[0].message.content is not None


# ---- limits: body size and time, a full waiting line, a slow answer (tiny model, in this process) -----------------

@pytest.fixture(scope="module")
def tiny_server(tiny):
    "The tiny model behind uvicorn in a thread, with small limits: 64 KiB JSON, 1 s to send a body, 1 waiting request."
    cfg = tiny_config(tiny, max_json_bytes=64 * 2**10, body_timeout=1.0, max_waiting=1,
                      chat=dict(max_batch=1, max_tokens_limit=200))
    with BackgroundServer(make_app(cfg)) as srv: yield srv


def test_body_past_the_limit_is_413(tiny_server):
    url = f"{tiny_server.url}/v1/embeddings"
    big = json.dumps({"model": EMBED, "input": "x" * (70 * 2**10)}).encode()
    r = httpx.post(url, content=big, headers={**AUTH, "Content-Type": "application/json"}) # with Content-Length
    assert r.status_code == 413 and is_openai_error(r) and r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(url, content=iter([big[:40_000], big[40_000:]]), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and is_openai_error(r) # chunked: counted as it arrives
    ok = httpx.post(url, json={"model": EMBED, "input": "x" * 1000}, headers=AUTH, timeout=60)
    assert ok.status_code == 200


def test_slow_body_is_408(tiny_server):
    "A client that sends half its body and stalls gets a 408 after body_timeout, and the server serves the next one."
    body = json.dumps({"model": "tiny", "prompt": "hello", "max_tokens": 2}).encode()
    with socket.create_connection((tiny_server.host, tiny_server.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        t0 = time.time(); reply = s.recv(65536).decode(errors="replace"); waited = time.time() - t0
    assert reply.startswith("HTTP/1.1 408") and '"code":"timeout"' in reply.replace(" ", "") and 0.5 < waited < 9
    assert httpx.post(f"{tiny_server.url}/v1/completions", content=body, headers={**AUTH, "Content-Type": "application/json"}).status_code == 200


def test_full_waiting_line_is_429(tiny_server):
    "One row in the batch and one place in the line: of five simultaneous long answers, some are refused with 429."
    def ask(i):
        return httpx.post(f"{tiny_server.url}/v1/completions", json={"model": "tiny", "prompt": f"hello {i}",
                          "max_tokens": 200}, headers=AUTH, timeout=120)
    with ThreadPoolExecutor(5) as ex: rs = list(ex.map(ask, range(5)))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(429) >= 1 and codes.count(200) >= 2, codes
    busy = next(r for r in rs if r.status_code == 429)
    assert is_openai_error(busy) and busy.json()["error"]["code"] == "rate_limit_exceeded" and busy.headers["retry-after"]


def test_slow_answer_is_408(tiny):
    "An answer that outlives request_timeout: 408 as JSON, an error event in a stream; the row is freed."
    with TestClient(make_app(tiny_config(tiny, request_timeout=0.0, chat=dict(max_tokens_limit=200)))) as tc:
        r = tc.post("/v1/completions", json={"model": "tiny", "prompt": "hello", "max_tokens": 200}, headers=AUTH)
        assert r.status_code == 408 and is_openai_error(r) and r.json()["error"]["code"] == "timeout"
        s = tc.post("/v1/completions", json={"model": "tiny", "prompt": "hello", "max_tokens": 200, "stream": True}, headers=AUTH)
        events = [l[6:] for l in s.text.split("\n") if l.startswith("data: ")]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["code"] == "timeout"
        engine = tc.app.state.pool.loaded["tiny"].engine
        assert len(engine.cache.free) == engine.cache.n_blocks


# ---- fuzzing: never a 500, always OpenAI's error shape --------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_client(tiny):
    "The app in this process (no socket) with the tiny chat model and small limits, so that anything goes fast."
    cfg = tiny_config(tiny, max_json_bytes=64 * 2**10, max_upload_bytes=256 * 2**10)
    with TestClient(make_app(cfg), raise_server_exceptions=False) as tc: yield tc

OK_STATUSES = {200, 400, 401, 404, 405, 408, 413, 429}

def check_answer(r):
    "The property every response must have: an expected status, and OpenAI's error body when it is not 200."
    assert r.status_code in OK_STATUSES, (r.status_code, r.text[:500])
    if r.status_code != 200: assert is_openai_error(r), r.text[:500]
    elif r.headers["content-type"].startswith("text/event-stream"): assert r.text.rstrip().endswith("data: [DONE]")
    return r

texts = st.text(max_size=20) | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2).map(lambda s: "a" + s) # lone surrogates too
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | texts,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)
VALID = {"/v1/chat/completions": {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3},
         "/v1/completions": {"model": "tiny", "prompt": "hello world", "max_tokens": 3},
         "/v1/embeddings": {"model": EMBED, "input": ["a cat", "a dog"]}}
FIELDS = ["model", "messages", "prompt", "input", "max_tokens", "n", "stream", "stop", "seed", "temperature", "top_p",
          "echo", "encoding_format", "dimensions", "presence_penalty", "max_completion_tokens"]
TEXT_FIELDS = {"/v1/chat/completions": {"content": lambda b, t: b.update(messages=[{"role": "user", "content": t}]),
                                        "part": lambda b, t: b.update(messages=[{"role": "user", "content": [{"type": "text", "text": t}]}]),
                                        "stop": lambda b, t: b.update(stop=[t])},
               "/v1/completions": {"prompt": lambda b, t: b.update(prompt=t), "prompts": lambda b, t: b.update(prompt=["x", t]),
                                   "stop": lambda b, t: b.update(stop=t), "echo": lambda b, t: b.update(prompt=t, echo=True)},
               "/v1/embeddings": {"input": lambda b, t: b.update(input=t), "inputs": lambda b, t: b.update(input=["x", t])}}

@st.composite
def bodies(draw):
    "A path and a body: valid, a text the tokenizer reads made any text, a field made any JSON, dropped or added; any JSON or bytes."
    kind = draw(st.sampled_from(["valid", "text", "text", "parts", "replace", "drop", "extra", "json", "bytes"]))
    path = "/v1/chat/completions" if kind == "parts" else draw(st.sampled_from(sorted(VALID)))
    body = json.loads(json.dumps(VALID[path]))
    if kind == "text": TEXT_FIELDS[path][draw(st.sampled_from(sorted(TEXT_FIELDS[path])))](body, draw(texts))
    if kind == "replace": body[draw(st.sampled_from(FIELDS))] = draw(json_values)
    if kind == "drop": body.pop(draw(st.sampled_from(sorted(body))))
    if kind == "extra": body[draw(texts)] = draw(json_values)
    if kind == "json": body = draw(json_values)
    if kind == "parts": # message content as parts of any shape, most of them claiming to be text
        part = st.fixed_dictionaries({"type": st.sampled_from(["text"] * 6 + ["image_url"]) | texts, "text": json_values})
        body["messages"] = [{"role": "user", "content": draw(st.lists(part, min_size=1, max_size=3))}]
    if kind in ("text", "replace") and path != "/v1/embeddings" and draw(st.booleans()): body["stream"] = True
    return path, draw(st.binary(max_size=300)) if kind == "bytes" else json.dumps(body).encode() # NaN and lone surrogates included

@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies(), st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded",
                                  "multipart/form-data; boundary=x"]))
def test_fuzz_json_bodies(fuzz_client, path_body, content_type):
    path, raw = path_body
    check_answer(fuzz_client.post(path, content=raw, headers={**AUTH, **({"Content-Type": content_type} if content_type else {})}))

@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=40),
                 st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=40).map(lambda t: "Bearer " + t),
                 st.sampled_from([f"Bearer {KEY}", f"bearer  {KEY} ", f"Bearer {KEY}\xe9", "Bearer \xe9\xe8"])),
       st.sampled_from(["/v1/models", "/v1/models/tiny", "/v1/chat/completions", "/v1/nowhere"]),
       st.dictionaries(st.sampled_from(["content-type", "accept", "x-anything", "transfer-encoding-x"]),
                       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20), max_size=3))
def test_fuzz_headers(fuzz_client, auth, path, extra):
    "Any Authorization value and other headers: 401 unless it is the key, never a 500."
    headers = {**{k: v.encode("latin-1") for k, v in extra.items()}, "Authorization": auth.encode("latin-1")}
    method = "GET" if "models" in path else "POST"
    r = check_answer(fuzz_client.request(method, path, headers=headers, content=json.dumps(VALID.get(path, {})).encode()))
    if path != "/v1/nowhere": assert (r.status_code == 401) == (auth[7:].strip() != KEY or auth[:7].lower() != "bearer "), (auth, r.status_code)

@st.composite
def uploads(draw):
    "A multipart upload: random bytes or a WAV of noise (any rate, channels, width, length), and any form fields."
    if draw(st.booleans()): data = draw(st.binary(max_size=400))
    else:
        x = np.random.default_rng(draw(st.integers(0, 9))).uniform(-1, 1, (draw(st.integers(0, 3000)), draw(st.integers(1, 2))))
        data = wav_bytes(x.astype(np.float32), draw(st.sampled_from([4000, 8000, 16000, 44100])), draw(st.sampled_from([1, 2])))
    often = lambda good, bad: st.one_of(st.just(good), st.just(good), st.just(good), st.sampled_from(bad)) # 3 in 4 valid
    form = {"model": draw(often(WHISPER, ["whisper-1", "tiny", "nope", ""]))}
    for k, good, bad in (("language", "en", ["fr", ""]), ("response_format", "json", ["text", "verbose_json", "srt"]),
                         ("temperature", "0", ["0.5", "x", "nan", "inf"]), ("prompt", "", ["digits"])):
        if draw(st.booleans()): form[k] = draw(often(good, bad))
    return data, draw(st.text(max_size=20)), form, draw(st.sampled_from([True, True, True, False]))

@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(uploads())
def test_fuzz_multipart_uploads(fuzz_client, upload):
    data, name, form, with_file = upload
    files = {"file": (name or "x", data, "audio/wav")} if with_file else None
    check_answer(fuzz_client.post("/v1/audio/transcriptions", data=form, files=files, headers=AUTH))


def test_upload_past_the_limit_is_413(fuzz_client):
    r = fuzz_client.post("/v1/audio/transcriptions", data={"model": WHISPER}, headers=AUTH,
                         files={"file": ("big.wav", b"\0" * (257 * 2**10), "audio/wav")})
    assert r.status_code == 413 and is_openai_error(r)


# ---- config, paths, names, the address ----------------------------------------------------------------------------

def test_toml_config_equals_yaml(tmp_path):
    toml = tmp_path/"models.toml"
    toml.write_text('[server]\nhost = "127.0.0.1"\nport = 8000\n\n'
                    '[[models]]\nname = "smollm2-135m-instruct"\nkind = "chat"\npath = "shipped:smollm2"\n'
                    'aliases = ["gpt-4o-mini"]\nn_ctx = 2048\nmax_tokens = 256\n\n'
                    '[[models]]\nname = "all-minilm-l6-v2"\nkind = "embedding"\npath = "shipped:minilm"\n'
                    'aliases = ["text-embedding-3-small"]\nmax_length = 256\n\n'
                    '[[models]]\nname = "whisper-tiny.en"\nkind = "transcription"\npath = "shipped:whisper_tiny_en"\n'
                    'aliases = ["whisper-1"]\n')
    assert ServeConfig.from_file(toml) == ServeConfig.from_file(CONFIG) == ServeConfig.shipped()
    for m in ServeConfig.from_file(CONFIG).models: assert m.resolve().exists()


def test_config_errors(tmp_path):
    bad = tmp_path/"bad.yaml"
    bad.write_text("models:\n  - {name: a, kind: chat, path: missing.gguf}\n")
    with pytest.raises(FileNotFoundError, match="missing.gguf"): ServeConfig.from_file(bad).models[0].resolve(tmp_path)
    for text, match in (("models:\n  - {name: a, kind: chat, path: x, context: 5}\n", "context"), ("models: []\n", "empty"),
                        ("- just a list\n", "table"), ("server: {base_dir: /}\nmodels: [{name: a, kind: chat, path: x}]\n", "base_dir")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=match): ServeConfig.from_file(bad)
    with pytest.raises(ValueError, match="kind"): ModelSpec("a", "vision", "x")


def test_config_paths_cannot_leave_their_folder(tmp_path):
    (tmp_path/"models").mkdir(); (tmp_path/"models"/"m.gguf").write_bytes(b"x"); (tmp_path/"secret.gguf").write_bytes(b"x")
    folder = tmp_path/"models"
    assert ModelSpec("a", "chat", "m.gguf").resolve(folder) == folder/"m.gguf"
    assert ModelSpec("a", "chat", "./sub/../m.gguf").resolve(folder) == folder/"m.gguf" # inside, after normalising
    for escape in ("../secret.gguf", "sub/../../secret.gguf", str(tmp_path/"secret.gguf"), "/etc/passwd"):
        with pytest.raises(ValueError, match="folder"): ModelSpec("a", "chat", escape).resolve(folder)
    with pytest.raises(ValueError, match="relative to the config"): ModelSpec("a", "chat", "m.gguf").resolve(None)
    cfg = folder/"serve.yaml"
    cfg.write_text("models:\n  - {name: a, kind: chat, path: ../secret.gguf}\n")
    assert serve_cli(["--config", str(cfg)]) == 2


def test_model_names_are_plain_ids():
    for bad in ("../x", "a/b", "a b", "", "x" * 97, ".hidden", "a\nb"):
        with pytest.raises(ValueError, match="not allowed"): ModelSpec(bad, "chat", "shipped:smollm2")
    with pytest.raises(ValueError, match="not allowed"): ModelSpec("ok", "chat", "shipped:smollm2", aliases=["../../etc"])
    ModelSpec("gpt-4o-mini", "chat", "shipped:smollm2", aliases=["smollm2:135m", "a.b_c"])


def test_listens_on_loopback_unless_told(tiny, tmp_path):
    "Started without --host, the server's only listening socket is on 127.0.0.1."
    cfg = tiny/"tiny-only.yaml"
    cfg.write_text("models:\n  - {name: tiny, kind: chat, path: tiny.gguf, kv_cache_tokens: 2048}\n")
    proc, url = start_server(["--config", str(cfg)], env={"LLMCOURSE_HOME": str(tmp_path/"home")})
    try:
        p = psutil.Process(proc.pid)
        conns = (p.net_connections if hasattr(p, "net_connections") else p.connections)(kind="inet") # psutil 6 renamed it
        listening = [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
    finally: stop_server(proc)


def test_serve_cli_exit_codes(tmp_path, capsys):
    assert serve_cli(["--config", str(tmp_path/"none.yaml")]) == 2
    assert serve_cli(["--threads", "0", "--config", str(CONFIG)]) == 2
    assert serve_cli(["--max-batch", "0", "--config", str(CONFIG)]) == 2
    assert serve_cli(["--port", "eighty"]) == 2
    assert serve_cli(["--help"]) == 0
    out = capsys.readouterr()
    assert "--api-key" in out.out and "none.yaml" in out.err

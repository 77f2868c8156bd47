"""The `llmcourse serve` API against the official `openai` client, on a live uvicorn server on 127.0.0.1.

The server runs in a subprocess started through `serve_cli` (the code behind `llmcourse serve`) with the example
config `data/serve/models.yaml`, on a free port, with an API key. References: llama-cpp-python called directly
(same GGUF, greedy decoding), sentence-transformers (same MiniLM folder) and the FSDD labels (the digits spoken).
"""
import json, os, re, subprocess, sys, threading, time, wave, io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from llmcourse.core import asset_path

import numpy as np
import pytest

pytest.importorskip("fastapi"); pytest.importorskip("uvicorn"); pytest.importorskip("multipart")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("llama_cpp"); pytest.importorskip("faster_whisper")

from llmcourse.serve import ServeConfig, ModelSpec, free_port, serve_cli, wav_bytes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = asset_path("serve", "models.yaml")
KEY = "sk-test-llmcourse"
CHAT, EMBED, WHISPER = "smollm2-135m-instruct", "all-minilm-l6-v2", "whisper-tiny.en"


@pytest.fixture(scope="module")
def server():
    "A live server in a subprocess: yields its base URL, stops it at the end."
    port = free_port()
    code = "import sys; from llmcourse.serve import serve_cli; sys.exit(serve_cli(sys.argv[1:]))"
    env = dict(os.environ, LLMCOURSE_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("LLMCOURSE_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(CONFIG), "--host", "127.0.0.1",
                             "--port", str(port), "--api-key", KEY, "--threads", "1", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, t0 = f"http://127.0.0.1:{port}", time.time()
    while True:
        if proc.poll() is not None: pytest.fail(f"the server exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200: break
        except httpx.TransportError: pass
        if time.time() - t0 > 180: proc.kill(); pytest.fail("the server did not start in 180 s")
        time.sleep(0.2)
    yield url
    proc.terminate()
    try: proc.wait(20)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def llama():
    "The reference: llama-cpp-python on the same GGUF, in this process."
    from llama_cpp import Llama
    from llmcourse.data import smollm2_gguf
    return Llama(model_path=str(smollm2_gguf()), n_ctx=2048, n_threads=1, verbose=False)


def health(url): return httpx.get(f"{url}/health", timeout=10).json()


# ---- /v1/models, the key ------------------------------------------------------------------------------------------

def test_models_lists_config_names_and_aliases(client):
    ids = {m.id for m in client.models.list()}
    assert {CHAT, EMBED, WHISPER, "gpt-4o-mini", "text-embedding-3-small", "whisper-1"} <= ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError): client.models.retrieve("no-such-model")


def test_api_key_required(server):
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": KEY}):
        r = httpx.get(f"{server}/v1/models", headers=headers, timeout=10)
        assert r.status_code == 401, headers
        err = r.json()["error"]
        assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error" and err["message"]
    wrong = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


# ---- chat and completions ----------------------------------------------------------------------------------------

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]

def test_chat_matches_llama_cpp(client, llama):
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=12, temperature=0)
    want = llama.create_chat_completion(messages=QUESTION, max_tokens=12, temperature=0)
    assert r.model == CHAT and r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert r.usage.prompt_tokens == want["usage"]["prompt_tokens"] and 0 < r.usage.completion_tokens <= 12


def test_chat_stream_equals_plain_answer(client):
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=12,
                                                 temperature=0, stream=True))
    assert len(chunks) > 2 and all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_chat_stream_raw_sse_ends_with_done(server):
    body = {"model": CHAT, "messages": QUESTION, "max_tokens": 3, "temperature": 0, "stream": True}
    r = httpx.post(f"{server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [l[len("data: "):] for l in r.text.split("\n") if l.startswith("data: ")]
    assert events[-1] == "[DONE]" and all("choices" in json.loads(e) for e in events[:-1])


def test_completions_match_llama_cpp(client, llama):
    prompt = "1, 2, 3, 4, 5,"
    r = client.completions.create(model=CHAT, prompt=prompt, max_tokens=8, temperature=0)
    want = llama.create_completion(prompt=prompt, max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text == want["choices"][0]["text"]
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=CHAT, prompt=prompt, max_tokens=8, temperature=0, stream=True))
    assert streamed == r.choices[0].text
    two = client.completions.create(model=CHAT, prompt=[prompt, "The sky is"], max_tokens=3, temperature=0)
    assert [c.index for c in two.choices] == [0, 1] and two.choices[0].text == want["choices"][0]["text"][:len(two.choices[0].text)]


# ---- embeddings --------------------------------------------------------------------------------------------------

SENTENCES = ["A cat sits on the mat.", "A kitten rests on a rug.", "Shares dropped at the opening bell.",
             "An utterly different sentence, rather longer than the others, to make the batch need padding."]

def test_embeddings_match_sentence_transformers(client, server):
    st = pytest.importorskip("sentence_transformers")
    from llmcourse.data import minilm_dir
    ref = st.SentenceTransformer(str(minilm_dir()), device="cpu").encode(SENTENCES)
    r = client.embeddings.create(model=EMBED, input=SENTENCES) # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in r.data])
    assert got.shape == (4, 384) and [d.index for d in r.data] == [0, 1, 2, 3]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert r.usage.prompt_tokens > 0 and r.model == EMBED
    raw = httpx.post(f"{server}/v1/embeddings", json={"model": "text-embedding-3-small", "input": SENTENCES[0],
                     "encoding_format": "float"}, headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
    np.testing.assert_allclose(raw["data"][0]["embedding"], ref[0], atol=1e-5)


def test_embeddings_bad_input(client):
    for kw in (dict(input=[1, 2, 3]), dict(input=""), dict(input=["ok"], dimensions=64)):
        with pytest.raises(openai.BadRequestError): client.embeddings.create(model=EMBED, **kw)


# ---- transcriptions ----------------------------------------------------------------------------------------------

DIGITS = [3, 1, 4, 1, 5, 9]
WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine".split())}

@pytest.fixture(scope="module")
def spoken_digits():
    "Six FSDD recordings (speaker jackson, take 0, 8 kHz) joined with 0.3 s pauses, as a WAV file."
    from llmcourse.data import load_fsdd
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
    assert v.language == "en" and abs(v.duration - len(DIGITS) * 0.3 - 0.1) < 3


def test_transcription_bad_uploads(client, server):
    tone = np.sin(2 * np.pi * 300 * np.arange(4000) / 4000).astype(np.float32)
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model=WHISPER, file=("low.wav", wav_bytes(tone, 4000), "audio/wav"))
    assert e.value.code == "invalid_sample_rate" and "4000 Hz" in e.value.message
    for junk in (b"this is a text file, not audio" * 20, bytes(range(256)) * 40):
        with pytest.raises(openai.BadRequestError) as e:
            client.audio.transcriptions.create(model=WHISPER, file=("notes.wav", junk, "audio/wav"))
        assert e.value.code == "invalid_audio"
    with pytest.raises(openai.BadRequestError): # a chat model cannot transcribe
        client.audio.transcriptions.create(model=CHAT, file=("low.wav", wav_bytes(tone, 4000)))
    r = httpx.post(f"{server}/v1/audio/transcriptions", data={"model": WHISPER}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file" # no file at all


# ---- bad requests ------------------------------------------------------------------------------------------------

def test_malformed_json_is_400(server):
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        r = httpx.post(f"{server}{path}", content=b'{"model": "smollm2-135m-instruct", "messages": [', headers=h)
        assert r.status_code == 400, (path, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json" and "JSON" in err["message"]
    for body, headers in ((b"[1, 2]", h), (b"", h), (b'{"model": "x"}', {"Authorization": f"Bearer {KEY}"})):
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
        results = [f.result(timeout=120) for f in futures]
    assert len(results) == 16 and all(r is not None for r in results)
    assert sum(r == 384 for r in results) == 4
    assert all(r.message.content is not None for r in results if r != 384)
    assert h["status"] == "ok" and waited < 5


def test_client_disconnect_mid_stream(client, server):
    before = health(server)["streams_cut_off"]
    stream = client.completions.create(model=CHAT, prompt="1, 2, 3, 4, 5,", max_tokens=1000, temperature=0,
                                       stream=True)
    got = []
    for chunk in stream:
        got.append(chunk.choices[0].text)
        if len(got) == 3: break
    stream.close() # hang up after three tokens
    t0 = time.time()
    while True:
        h = health(server)
        if h["streams_open"] == 0 and not h["models"][CHAT]["busy"]: break
        assert time.time() - t0 < 30, f"the stream was not stopped after the client left: {h}"
        time.sleep(0.1)
    assert h["streams_cut_off"] == before + 1
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=3)
    assert r.choices[0].message.content is not None


# ---- config and command line (in-process) ------------------------------------------------------------------------

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
    bad.write_text("models:\n  - {name: a, kind: chat, path: x, context: 5}\n")
    with pytest.raises(ValueError, match="context"): ServeConfig.from_file(bad)
    bad.write_text("models: []\n")
    with pytest.raises(ValueError, match="empty"): ServeConfig.from_file(bad)
    with pytest.raises(ValueError, match="kind"): ModelSpec("a", "vision", "x")


def test_serve_cli_exit_codes(tmp_path, capsys):
    assert serve_cli(["--config", str(tmp_path/"none.yaml")]) == 2
    assert serve_cli(["--threads", "0", "--config", str(CONFIG)]) == 2
    assert serve_cli(["--port", "eighty"]) == 2
    assert serve_cli(["--help"]) == 0
    out = capsys.readouterr()
    assert "--api-key" in out.out and "none.yaml" in out.err

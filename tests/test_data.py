"""The data layer: checksums, atomic downloads, the mirror, the offline error, loaders, toy tasks."""
import hashlib, http.server, io, os, tarfile, zipfile
from pathlib import Path
import pytest
from llmcourse import data
from llmcourse.data import (RemoteFile, Resource, ChecksumError, ResourceUnavailable, download, fetch, fetch_file,
                            verify, toy_task, TOY_TASKS, REGISTRY)

def _sha(b: bytes) -> str: return hashlib.sha256(b).hexdigest()

def _leftovers(folder: Path):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []

@pytest.fixture
def temp_resource(monkeypatch):
    "Register a throw-away resource for one test."
    def make(name, files):
        res = Resource(name, name, tuple(files), "test", "a test resource", "none")
        monkeypatch.setitem(REGISTRY, name, res)
        return res
    return make

def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path):
    src = tmp_path/"src.bin"; src.write_bytes(b"x" * 5000)
    dest = tmp_path/"out"/"file.bin"
    with pytest.raises(ChecksumError, match="must have sha256"):
        download(src.as_uri(), dest, sha256="0" * 64, progress=False)
    assert _leftovers(tmp_path/"out") == []

def test_mirror_checksum_mismatch_is_reported_not_skipped(tmp_path, home, monkeypatch, temp_resource):
    (tmp_path/"m"/"t").mkdir(parents=True); (tmp_path/"m"/"t"/"a.txt").write_text("tampered")
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(tmp_path/"m"))
    res = temp_resource("t", [RemoteFile("a.txt", (), _sha(b"original"), 8)])
    with pytest.raises(ChecksumError):
        fetch("t", progress=False)
    assert not (home/"data"/"t"/"a.txt").exists()
    assert [p for p in (home/"data"/"t").iterdir()] == []

class _CutOff(http.server.BaseHTTPRequestHandler):
    "Promises 100,000 bytes, sends 40,000, then drops the connection."
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "100000"); self.end_headers()
        self.wfile.write(b"a" * 40_000); self.wfile.flush()
        self.connection.shutdown(2)

def test_interrupted_download_leaves_no_partial_file(tmp_path, http_server):
    url = http_server(_CutOff) + "/big.bin"
    dest = tmp_path/"out"/"big.bin"
    with pytest.raises(Exception):
        download(url, dest, sha256=_sha(b"a" * 100_000), retries=2, progress=False)
    assert _leftovers(tmp_path/"out") == []

def test_keyboard_interrupt_mid_download_leaves_no_partial_file(tmp_path, monkeypatch):
    src = tmp_path/"src.bin"; src.write_bytes(os.urandom(300_000))
    dest = tmp_path/"out"/"src.bin"
    class Bar:
        def __init__(self, *a, **k): self.n = 0
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def update(self, n):
            self.n += n
            if self.n > 100_000: raise KeyboardInterrupt
    monkeypatch.setattr(data, "progress_bar", Bar)
    with pytest.raises(KeyboardInterrupt):
        download(src.as_uri(), dest, sha256=_sha(src.read_bytes()))
    assert _leftovers(tmp_path/"out") == []

def test_retry_after_a_cut_off_download_then_success(tmp_path, http_server):
    calls = []
    body = b"payload" * 1000
    class Flaky(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            calls.append(1)
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            if len(calls) == 1: self.wfile.write(body[:100]); self.wfile.flush(); self.connection.shutdown(2)
            else: self.wfile.write(body)
    out = download(http_server(Flaky) + "/f", tmp_path/"f", sha256=_sha(body), retries=3, progress=False)
    assert out.read_bytes() == body and len(calls) == 2

def test_offline_error_names_resource_url_and_mirror(tmp_path, home, monkeypatch, temp_resource):
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(tmp_path/"empty-mirror"))
    monkeypatch.delenv("LLMCOURSE_OFFLINE", raising=False)
    url = "http://127.0.0.1:9/nowhere/a.txt"  # the discard port: connection refused, no traffic leaves the machine
    temp_resource("offline_thing", [RemoteFile("a.txt", (url,), "0" * 64, 1)])
    with pytest.raises(ResourceUnavailable) as e:
        fetch("offline_thing", progress=False)
    msg = str(e.value)
    assert "offline_thing" in msg and url in msg and "LLMCOURSE_MIRROR" in msg and "empty-mirror" in msg

def test_offline_setting_never_tries_public_addresses(tmp_path, home, monkeypatch, temp_resource, http_server):
    hits = []
    class Counting(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self): hits.append(self.path); self.send_response(404); self.end_headers()
    url = http_server(Counting) + "/a.txt"
    monkeypatch.setenv("LLMCOURSE_OFFLINE", "1")
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(tmp_path/"empty"))
    temp_resource("public_only", [RemoteFile("a.txt", (url,), "0" * 64, 1)])
    with pytest.raises(ResourceUnavailable, match="skipped: LLMCOURSE_OFFLINE=1"):
        fetch("public_only", progress=False)
    assert hits == []

def test_mirror_url_prefix(home, monkeypatch, mirror_folder, http_server):
    monkeypatch.setenv("LLMCOURSE_MIRROR", http_server(mirror_folder))
    p = fetch("tiny_shakespeare", progress=False)
    assert (p/"input.txt").stat().st_size == 1_115_394
    assert verify("tiny_shakespeare") == []

def test_mirror_url_resolution():
    res = REGISTRY["sst2"]
    assert data.mirror_url(res, res.files[0], "http://h:1/pre/") == "http://h:1/pre/sst2/train.tsv"
    assert data.mirror_url(res, res.files[0], "/m").endswith("/m/sst2/train.tsv")
    assert data.mirror_url(res, res.files[0], "/m").startswith("file://")

@pytest.mark.parametrize("name", sorted(n for n, r in REGISTRY.items() if all(f.sha256 for f in r.files)))
def test_every_registry_entry_fetches_from_the_mirror_and_verifies(name, home, monkeypatch, mirror_folder):
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(mirror_folder))
    folder = fetch(name, progress=False)
    assert folder.is_dir() and verify(name) == []
    # a second fetch is served from the local store, even with the mirror gone
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(home/"no-mirror"))
    assert fetch(name, progress=False) == folder

def test_verify_finds_a_corrupted_file(home, monkeypatch, mirror_folder):
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(mirror_folder))
    p = fetch("elmo_test_vectors", progress=False)/"options.json"
    p.write_text("{}")
    assert any("options.json" in s for s in verify("elmo_test_vectors"))

def test_archive_contents_checked_and_unsafe_members_refused(tmp_path, home, monkeypatch, temp_resource):
    def targz(members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for name, payload in members.items():
                info = tarfile.TarInfo(name); info.size = len(payload); t.addfile(info, io.BytesIO(payload))
        return buf.getvalue()
    good = targz({"pkg/recordings/1_a_0.wav": b"one", "pkg/README": b"hi"})
    (tmp_path/"m"/"arch").mkdir(parents=True)
    (tmp_path/"m"/"arch"/"a.tar.gz").write_bytes(good)
    ref = tmp_path/"ref"; ref.mkdir()
    with tarfile.open(fileobj=io.BytesIO(good)) as t: t.extractall(ref)
    digest = data.contents_digest(ref, "*/recordings/*.wav")
    monkeypatch.setenv("LLMCOURSE_MIRROR", str(tmp_path/"m"))
    temp_resource("arch", [RemoteFile("a.tar.gz", (), _sha(good), len(good), unpack=True, content_sha256=digest,
                                      content_glob="*/recordings/*.wav")])
    out = fetch("arch", progress=False)
    assert (out/"a"/"pkg"/"recordings"/"1_a_0.wav").read_bytes() == b"one"
    evil = targz({"../escape.txt": b"x"})
    (tmp_path/"m"/"evil").mkdir(); (tmp_path/"m"/"evil"/"e.tar.gz").write_bytes(evil)
    temp_resource("evil", [RemoteFile("e.tar.gz", (), _sha(evil), len(evil), unpack=True)])
    with pytest.raises(ValueError, match="unsafe member"):
        fetch("evil", progress=False)
    assert not (home/"data"/"escape.txt").exists()

def test_zip_member_from_a_public_archive(tmp_path, home, monkeypatch, http_server, temp_resource):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z: z.writestr("SST-2/dev.tsv", "sentence\tlabel\ngood\t1\n")
    (tmp_path/"site").mkdir(); (tmp_path/"site"/"SST-2.zip").write_bytes(buf.getvalue())
    url = http_server(tmp_path/"site") + "/SST-2.zip"
    monkeypatch.delenv("LLMCOURSE_MIRROR", raising=False)
    monkeypatch.delenv("LLMCOURSE_OFFLINE", raising=False)  # the "public" host here is a loopback server
    member = b"sentence\tlabel\ngood\t1\n"
    temp_resource("zipped", [RemoteFile("dev.tsv", (url,), _sha(member), len(member), member="SST-2/dev.tsv")])
    assert (fetch("zipped", progress=False)/"dev.tsv").read_bytes() == member
    temp_resource("zipped_bad", [RemoteFile("dev.tsv", (url,), "0" * 64, 1, member="SST-2/dev.tsv")])
    with pytest.raises(ChecksumError):
        fetch("zipped_bad", progress=False)
    assert not (home/"data"/"zipped_bad"/"dev.tsv").exists()

@pytest.mark.parametrize("task", TOY_TASKS)
def test_toy_task_splits_never_overlap(task):
    train = toy_task(task, 3000, seed=1)
    held = toy_task(task, 500, split="heldout", seed=2)
    assert not {s for s, _ in train} & {s for s, _ in held}
    assert toy_task(task, 50, seed=7) == toy_task(task, 50, seed=7)
    assert toy_task(task, 50, seed=7) != toy_task(task, 50, seed=8)

def test_toy_task_answers_are_right():
    for s, t in toy_task("reverse", 100): assert t == s[::-1]
    for s, t in toy_task("sort", 100): assert t == "".join(sorted(s))
    for s, t in toy_task("add", 100):
        a, b = s.split("+"); assert int(t) == int(a) + int(b)

def test_toy_task_bad_arguments():
    with pytest.raises(ValueError, match="Unknown task"): toy_task("divide", 1)
    with pytest.raises(ValueError, match="split"): toy_task("copy", 1, split="test")

def test_read_wav_rejects_a_file_that_is_not_audio(tmp_path):
    p = tmp_path/"fake.wav"; p.write_text("not audio at all")
    with pytest.raises(ValueError, match="is not a PCM WAV file"):
        data.read_wav(p)

def test_unknown_sst2_split():
    with pytest.raises(ValueError, match="splits"): data.load_sst2("validation")

def test_missing_shipped_model_names_the_extra():
    with pytest.raises(data.MissingExtra, match=r"llmcourse\[audio\]"):
        data._package_dir("surely_not_installed_pkg", "surely-not", "audio", "A model")

def _fetch_in_child(args):
    home, mirror, name = args
    import os
    os.environ.update(LLMCOURSE_HOME=home, LLMCOURSE_MIRROR=mirror)
    from llmcourse.data import fetch, verify
    fetch(name, progress=False)
    return verify(name)

def test_two_processes_fetching_the_same_archive(home, mirror_folder):
    # lessons run side by side (make nbtest) and may fetch and unpack the same data set at once
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_fetch_in_child, [(str(home), str(mirror_folder), "fsdd")] * 2)
    assert results == [[], []]                                      # both see one verified archive and its contents
    assert not [p for p in home.rglob("*") if p.name.endswith(".part") or ".part" in p.name]   # and nothing half-written


# ---- files with no published sha256: explicit consent, a pin, then checks against the pin

def test_unpinned_resource_needs_consent_then_is_pinned_and_checked(tmp_path, home, monkeypatch, temp_resource, http_server):
    (tmp_path/"pub").mkdir(); (tmp_path/"pub"/"w.bin").write_bytes(b"weights v1")
    url = http_server(tmp_path/"pub") + "/w.bin"
    monkeypatch.setenv("LLMCOURSE_OFFLINE", "0"); monkeypatch.delenv("LLMCOURSE_MIRROR", raising=False)
    temp_resource("nosha", [RemoteFile("w.bin", (url,), None, None)])
    with pytest.raises(data.UnpinnedResource, match="trust_on_first_use=True"):
        fetch("nosha", progress=False)
    assert not (home/"data"/"nosha"/"w.bin").exists() and not data.pins_path().exists()
    with pytest.warns(UserWarning, match="trusted on first use"):
        folder = fetch("nosha", progress=False, trust_on_first_use=True)
    assert data.pinned_sha256(REGISTRY["nosha"], REGISTRY["nosha"].files[0]) == _sha(b"weights v1")
    assert verify("nosha") == []
    assert fetch("nosha", progress=False) == folder            # now pinned: no consent needed, served from the store
    (folder/"w.bin").write_bytes(b"weights v2")                 # the file changes after the pin
    assert any("pinned on first use" in p for p in verify("nosha"))

def test_unpinned_file_changed_at_the_source_is_refused_after_the_pin(tmp_path, home, monkeypatch, temp_resource, http_server):
    (tmp_path/"pub").mkdir(); (tmp_path/"pub"/"w.bin").write_bytes(b"v1")
    url = http_server(tmp_path/"pub") + "/w.bin"
    monkeypatch.setenv("LLMCOURSE_OFFLINE", "0"); monkeypatch.delenv("LLMCOURSE_MIRROR", raising=False)
    temp_resource("nosha2", [RemoteFile("w.bin", (url,), None, None)])
    with pytest.warns(UserWarning): folder = fetch("nosha2", progress=False, trust_on_first_use=True)
    (folder/"w.bin").unlink(); (tmp_path/"pub"/"w.bin").write_bytes(b"v2 from somebody else")
    with pytest.raises(ChecksumError):
        fetch("nosha2", progress=False, trust_on_first_use=True)
    assert not (folder/"w.bin").exists()

def test_an_empty_hash_is_never_stored_as_verified(home, temp_resource):
    res = temp_resource("nosha3", [RemoteFile("x", (), None, None)])
    (home/"data"/"nosha3").mkdir(parents=True); (home/"data"/"nosha3"/"x").write_text("anything")
    (home/"data"/"nosha3"/"x.sha256").write_text("\n")        # what an old version wrote for sha256 ""
    with pytest.raises(data.UnpinnedResource): fetch("nosha3", progress=False)
    with pytest.raises(ValueError, match="empty hash"): data._pin(res, res.files[0], "")

# ---- the one audio loader: every kind of bad file, made here

import numpy as np
from llmcourse.data import load_audio, wav_bytes, AudioError, read_sst2_tsv

_tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)

@pytest.mark.parametrize("name,make,error", [
    ("text.wav", lambda: b"this is not audio at all" * 50, "is not audio"),
    ("empty.wav", lambda: b"", "is empty"),
    ("zero.wav", lambda: wav_bytes(_tone[:0], 16000), "holds no audio samples"),
    ("truncated.wav", lambda: wav_bytes(_tone, 16000)[:30], "is not audio"),
    ("low.wav", lambda: wav_bytes(_tone, 4000), "sampled at 4000 Hz"),
    ("long.wav", lambda: wav_bytes(np.tile(_tone, 4), 16000), "lasts 4.0 s"),
])
def test_load_audio_rejects_bad_files_by_name(tmp_path, name, make, error):
    p = tmp_path/name; p.write_bytes(make())
    with pytest.raises(AudioError, match=error) as e:
        load_audio(p, max_seconds=3)
    assert name in str(e.value)

@pytest.mark.parametrize("name,make,rate", [
    ("stereo.wav", lambda: wav_bytes(np.stack([_tone, _tone], 1), 16000), 16000),
    ("8bit.wav", lambda: wav_bytes(_tone, 16000, sample_width=1), 16000),
    ("96k.wav", lambda: wav_bytes(np.repeat(_tone, 6), 96000), 96000),
    ("8k.wav", lambda: wav_bytes(_tone[::2], 8000), 8000),
])
def test_load_audio_reads_what_it_can_use(tmp_path, name, make, rate):
    p = tmp_path/name; p.write_bytes(make())
    x = load_audio(p)
    assert x.dtype == np.float32 and len(x) == 16000 and np.isfinite(x).all()
    # the same 300 Hz tone comes back whatever the container: compare with the reference from scipy's own resampler
    assert abs(np.abs(np.fft.rfft(x)).argmax() - 300) <= 1

def test_load_audio_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No audio file"): load_audio(tmp_path/"nope.wav")

# ---- SST-2 files

@pytest.mark.parametrize("text,error", [
    ("sentence\n good film \n", "needs the columns 'sentence' and 'label'"),
    ("label\tsentence\n1\ta\tb\n", "3 tab-separated fields"),
    ("sentence\tlabel\ngood\tpositive\n", "the label is 'positive'"),
    ("", "is empty"),
])
def test_sst2_reader_rejects_bad_files(tmp_path, text, error):
    p = tmp_path/"bad.tsv"; p.write_text(text)
    with pytest.raises(ValueError, match=error) as e: read_sst2_tsv(p)
    assert "bad.tsv" in str(e.value)

def test_sst2_reader_takes_windows_line_endings(tmp_path):
    p = tmp_path/"crlf.tsv"; p.write_bytes(b"sentence\tlabel\r\na fine film \t1\r\na dull one \t0\r\n")
    df = read_sst2_tsv(p)
    assert df.label.tolist() == [1, 0] and df.sentence.tolist() == ["a fine film ", "a dull one "]

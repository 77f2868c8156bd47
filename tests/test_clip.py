"""Lesson 09: ViT and CLIP parity with transformers on random configs, wrong mappings caught, the data split, the
tokenizer, recall@k against scikit-learn and the caption-search widget without a browser."""
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

import transformers
from transformers import CLIPConfig as HFCLIPConfig, CLIPModel as HFCLIPModel, ViTConfig as HFViTConfig, ViTModel as HFViTModel

from llmcourse.clip import (CLIP, CLIPConfig, COLOURS, HELDOUT_COMBOS, SHAPES, TEST_COMBOS, TextConfig, VisionConfig, caption_search,
                            class_names, clip_from_hf, clip_loss, make_shape_captions, recall_at_k, shapes_tokenizer,
                            text_config_from_hf, unique_caption_set, vision_config_from_hf, vit_from_hf)

transformers.logging.set_verbosity_error()
TOK = shapes_tokenizer()


def randomize_(model, seed=0, std=0.2):
    "Noise on every parameter, LayerNorms included, so that a swapped copy shows."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def hf_vit(layers=2, hidden=32, heads=4, image=32, patch=8, pooler=True, act="gelu", seed=0):
    torch.manual_seed(seed)
    cfg = HFViTConfig(image_size=image, patch_size=patch, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=2 * hidden, hidden_act=act)
    return randomize_(HFViTModel(cfg, add_pooling_layer=pooler), seed).eval()


def hf_clip(act="quick_gelu", eos=TOK.eos_id, layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = HFCLIPConfig(
        text_config=dict(vocab_size=len(TOK), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, max_position_embeddings=16, hidden_act=act, bos_token_id=TOK.bos_id,
                         eos_token_id=eos, pad_token_id=TOK.pad_id),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4,
                           image_size=32, patch_size=8, hidden_act=act),
        projection_dim=24)
    return randomize_(HFCLIPModel(cfg), seed).eval()


CAPTIONS = ["a red circle", "a small blue square at the top left", "a photo of a large cross", "an image of a green triangle"]


@pytest.mark.parametrize("layers,hidden,heads,image,patch,pooler,act", [
    (1, 32, 4, 32, 8, True, "gelu"), (2, 48, 6, 32, 4, True, "gelu"), (3, 32, 2, 64, 16, False, "gelu_new"),
    (2, 32, 4, 48, 16, True, "relu")])
def test_vit_matches_transformers(layers, hidden, heads, image, patch, pooler, act):
    hf = hf_vit(layers, hidden, heads, image, patch, pooler, act)
    ours = vit_from_hf(hf).eval()
    x = torch.randn(3, 3, image, image)
    with torch.no_grad(): ref, (hidden_states, pooled) = hf(pixel_values=x), ours(x)
    assert_close(hidden_states, ref.last_hidden_state, atol=2e-5, rtol=2e-5)
    if pooler: assert_close(pooled, ref.pooler_output, atol=2e-5, rtol=2e-5)
    else: assert_close(pooled, ref.last_hidden_state[:, 0], atol=2e-5, rtol=2e-5)


def _swap(a, b):
    with torch.no_grad():
        tmp = a.detach().clone(); a.copy_(b); b.copy_(tmp)


WRONG_VIT = {
    "q and k swapped": lambda m: _swap(m.layers[0].self_attn.q_proj.weight, m.layers[0].self_attn.k_proj.weight),
    "LayerNorms swapped": lambda m: _swap(m.layers[1].norm1.weight, m.layers[1].norm2.weight),
    "patch kernel transposed": lambda m: m.patch_embed.weight.data.copy_(m.patch_embed.weight.data.transpose(-1, -2).clone()),
    "positions shifted": lambda m: m.pos_embed.data.copy_(m.pos_embed.data.roll(1, 0).clone()),
    "layers in the wrong order": lambda m: setattr(m, "layers", torch.nn.ModuleList(list(m.layers)[::-1])),
}


@pytest.mark.parametrize("what", list(WRONG_VIT))
def test_vit_check_catches_a_wrong_mapping(what):
    hf = hf_vit()
    ours = vit_from_hf(hf).eval()
    WRONG_VIT[what](ours)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): ref, (_, pooled) = hf(pixel_values=x), ours(x)
    with pytest.raises(AssertionError): assert_close(pooled, ref.pooler_output, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("act,layers", [("quick_gelu", 2), ("gelu", 1), ("quick_gelu", 3)])
def test_clip_loss_and_logits_match_transformers(act, layers):
    hf = hf_clip(act, layers=layers)
    ours = clip_from_hf(hf).eval()
    ids, mask = TOK(CAPTIONS)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values=x, attention_mask=mask, return_loss=True)
        per_image, per_text = ours(x, ids, mask)
        assert_close(per_image, ref.logits_per_image, atol=1e-4, rtol=1e-4)
        assert_close(per_text, ref.logits_per_text, atol=1e-4, rtol=1e-4)
        assert_close(clip_loss(per_text), ref.loss, atol=1e-5, rtol=1e-5)
        assert_close(ours.encode_text(ids, mask), ref.text_embeds, atol=1e-5, rtol=1e-5)
        assert_close(ours.encode_image(x), ref.image_embeds, atol=1e-5, rtol=1e-5)
        # the causal mask makes the attention mask irrelevant for the pooled end token
        assert_close(ours.encode_text(ids), ref.text_embeds, atol=1e-5, rtol=1e-5)


def test_clip_legacy_eos_config():
    "Configs from before transformers PR #24773 say eos_token_id=2 and pool at the largest id: ours reads the same."
    hf = hf_clip(eos=2)
    ours = clip_from_hf(hf).eval()
    assert ours.cfg.text.eos_id == len(TOK) - 1 == TOK.eos_id
    ids, mask = TOK(CAPTIONS)
    with torch.no_grad():
        assert_close(ours.encode_text(ids, mask), hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
                     .div(hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.norm(dim=-1, keepdim=True)),
                     atol=1e-5, rtol=1e-5)


WRONG_CLIP = {
    "text q and v swapped": lambda m: _swap(m.text.layers[0].self_attn.q_proj.weight, m.text.layers[0].self_attn.v_proj.weight),
    "vision pre-norm skipped": lambda m: setattr(m.vision, "norm_pre", torch.nn.Identity()),
    "projections swapped": lambda m: _swap(m.image_proj.weight[:, :32], m.text_proj.weight),
    "text positions shifted": lambda m: m.text.pos_embed.data.copy_(m.text.pos_embed.data.roll(1, 0)),
    "temperature not copied": lambda m: m.logit_scale.data.fill_(math.log(1 / 0.07)),
    "fc1 bias dropped": lambda m: m.vision.layers[1].ff.linear1.bias.data.zero_(),
}


@pytest.mark.parametrize("what", list(WRONG_CLIP))
def test_clip_check_catches_a_wrong_mapping(what):
    hf = hf_clip()
    ours = clip_from_hf(hf).eval()
    WRONG_CLIP[what](ours)
    ids, mask = TOK(CAPTIONS)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values=x, attention_mask=mask, return_loss=True)
        with pytest.raises(AssertionError): assert_close(ours(x, ids, mask)[1], ref.logits_per_text, atol=1e-4, rtol=1e-4)


def test_presets_match_the_library_defaults():
    "transformers' CLIPConfig() defaults are OpenAI's ViT-B/32."
    assert vision_config_from_hf(HFCLIPConfig().vision_config) == VisionConfig.clip_b32()
    assert text_config_from_hf(HFCLIPConfig().text_config) == TextConfig.clip_b32()
    with torch.device("meta"): ours, theirs = CLIP(CLIPConfig.clip_b32()), HFCLIPModel(HFCLIPConfig())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 151_277_313


def test_unseen_combinations_never_in_training():
    held = {class_names().index(f"{c} {s}") for c, s in HELDOUT_COMBOS}
    test = {class_names().index(f"{c} {s}") for c, s in TEST_COMBOS}
    assert not held & test and len(held) == len(test) == len(COLOURS)
    train = make_shape_captions(3000, "train", seed=11)
    assert not set(train.labels) & (held | test)
    assert len(set(train.labels)) == len(COLOURS) * len(SHAPES) - 2 * len(COLOURS)
    assert set(make_shape_captions(300, "heldout", seed=12).labels) == held
    assert set(make_shape_captions(300, "test", seed=12).labels) == test
    assert len(set(make_shape_captions(3000, "all", seed=13).labels)) == len(COLOURS) * len(SHAPES)
    # each colour is still seen with two shapes and each shape with three colours
    for c in range(len(COLOURS)): assert len(set(train.shape[train.colour == c])) == 2
    for s_ in range(len(SHAPES)): assert len(set(train.colour[train.shape == s_])) == 3
    rng = np.random.default_rng(0)
    for i in range(200):  # no training caption, with or without drops and prefixes, names an unseen combination
        cap = train.caption(i, drop=0.5, rng=rng)
        assert not any(f"{c} {s}" in cap for c, s in HELDOUT_COMBOS + TEST_COMBOS), cap


def test_generation_is_seeded_and_bad_input_is_refused():
    a, b = make_shape_captions(20, seed=4), make_shape_captions(20, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions
    assert not np.array_equal(a.images, make_shape_captions(20, seed=5).images)
    with pytest.raises(ValueError, match="split"): make_shape_captions(3, "validation")
    u = unique_caption_set(seed=0)
    assert len(u) == len(set(u.captions)) == 192


def test_tokenizer():
    ids, mask = TOK(["a red circle", "a photo of a small blue cross at the bottom right"])
    assert ids.shape == (2, 13) and mask.sum().item() == 5 + 13
    assert (ids[0, 5:] == TOK.eos_id).all() and TOK.eos_id == len(TOK) - 1
    assert TOK.decode(ids[1]) == "a photo of a small blue cross at the bottom right"
    with pytest.raises(ValueError, match="hexagon"): TOK(["a red hexagon"])
    from llmcourse.tokenizers import Tokenizer  # lesson 02's interface
    assert isinstance(TOK, Tokenizer) and TOK.vocab_size == len(TOK)
    assert TOK.encode("a red circle")[1:-1] == [TOK.stoi[w] for w in ("a", "red", "circle")]
    assert TOK.pieces("a red circle") == ["<bos>", "a", "red", "circle", "<eos>"]
    text = CLIP(CLIPConfig.tiny(TOK)).text
    with pytest.raises(ValueError, match="end token"): text(torch.tensor([[TOK.bos_id, 3, 4]]))
    with pytest.raises(ValueError, match="max_len"): text(torch.full((1, 40), TOK.eos_id))


def test_recall_matches_sklearn():
    from sklearn.metrics import top_k_accuracy_score
    g = torch.Generator().manual_seed(0)
    for n, k in [(20, 1), (20, 5), (50, 3)]:
        sim = torch.randn(n, n, generator=g) + torch.eye(n)
        want = top_k_accuracy_score(np.arange(n), sim.numpy(), k=k, labels=np.arange(n))
        assert recall_at_k(sim, ks=(k,))[k] == pytest.approx(want)


def test_figures_from_the_module():
    "The drawing helpers work outside the notebook (their imports live in the module)."
    import matplotlib; matplotlib.use("Agg")
    from llmcourse.clip import show_predictions
    data = make_shape_captions(4, "all", seed=2)
    fig = show_predictions(data.images, torch.softmax(torch.randn(4, 24), -1), class_names(), data.labels, ncols=2)
    assert len(fig.axes) == 4


def test_caption_search_runs_headless():
    model = CLIP(CLIPConfig.tiny(TOK)).eval()
    data = make_shape_captions(30, "all", seed=1)
    widget, search = caption_search(model, TOK, data.images, k=5)
    idx, scores = search("a large red circle")
    assert len(idx) == 5 and (scores[:-1] >= scores[1:]).all()
    box, picture, note = widget.children
    assert picture.value[:4] == b"\x89PNG"
    box.value = "a red hexagon"  # an unknown word: a message, not an exception
    assert "hexagon" in note.value


def _clip_folder(path):
    "A tiny random CLIP saved as a Hugging Face folder: config, safetensors, a character-level BPE tokenizer, an image processor."
    import json
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer
    path.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz.")  # a character-level BPE vocabulary without merges, CLIP's specials last
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    try: tokenizer = CLIPTokenizer(vocab=vocab, merges=[])  # transformers >= 5
    except TypeError: tokenizer = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    torch.manual_seed(0)
    cfg = HFCLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, max_position_embeddings=40, eos_token_id=2),  # legacy eos
                       vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                          image_size=32, patch_size=8),
                       projection_dim=16)
    hf = randomize_(HFCLIPModel(cfg)).eval()
    hf.save_pretrained(path); processor.save_pretrained(path)
    return hf, vocab


def test_clip_from_pretrained_on_a_local_checkpoint(tmp_path):
    "The full-mode path (hub folder -> our CLIP, BPE tokenizer, image processor) on a tiny random local checkpoint."
    from PIL import Image
    from llmcourse.clip import clip_from_pretrained, zero_shot_classifier, zero_shot_predict
    hf, vocab = _clip_folder(tmp_path)
    model, tokenize, preprocess = clip_from_pretrained(str(tmp_path), device="cpu")
    images = [Image.fromarray(x) for x in make_shape_captions(3, "all", seed=0).images]
    ids, mask = tokenize(["a photo of a cat", "a red circle"])
    assert (ids == len(vocab) - 1).any(1).all()  # every row ends with <|endoftext|>
    px = preprocess(images)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, pixel_values=px)
        assert_close(model(px, ids, mask)[0], ref.logits_per_image, atol=1e-4, rtol=1e-4)
    probs, top = zero_shot_predict(model, px, zero_shot_classifier(model, tokenize, ["cat", "dog"], ("a photo of a {}.",)))
    assert probs.shape == (3, 2) and torch.allclose(probs.sum(-1), torch.ones(3))


def _edit_json(f, **changes):
    import json
    cfg = json.loads(f.read_text()); cfg.update(changes); f.write_text(json.dumps(cfg))

def _edit_tensors(path, fn):
    from safetensors.torch import load_file, save_file
    sd = load_file(str(path / "model.safetensors")); fn(sd); save_file(sd, str(path / "model.safetensors"))

BAD_CLIP_FOLDERS = [  # (name, spoil a good folder -> the path to load, what the message must say)
    ("no such folder", lambda p: p / "nowhere", "does not exist"),
    ("no config.json", lambda p: ((p / "config.json").unlink(), p)[1], "has no config.json"),
    ("config.json is not JSON", lambda p: ((p / "config.json").write_text("{"), p)[1], "config.json is not valid JSON"),
    ("a BERT, not a CLIP", lambda p: (_edit_json(p / "config.json", model_type="bert", architectures=["BertModel"]), p)[1], "'bert' model (BertModel)"),
    ("no weights", lambda p: ((p / "model.safetensors").unlink(), p)[1], "neither model.safetensors nor pytorch_model.bin"),
    ("truncated safetensors", lambda p: ((p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:5000]), p)[1],
     "model.safetensors is not a readable safetensors file"),
    ("a missing tensor", lambda p: (_edit_tensors(p, lambda sd: sd.pop("visual_projection.weight")), p)[1],
     "lacks 1 tensor(s) that the model of config.json needs: visual_projection.weight"),
    ("a mis-shaped tensor", lambda p: (_edit_tensors(p, lambda sd: sd.update({"logit_scale": torch.zeros(2)})), p)[1],
     "tensor logit_scale has shape (2,), but config.json implies ()"),
    ("config of another size", lambda p: (_edit_json(p / "config.json", projection_dim=24), p)[1], "the weights and config.json come from different models"),
    ("no tokenizer files", lambda p: ((p / "vocab.json").unlink(), (p / "merges.txt").unlink(), [f.unlink() for f in p.glob("tokenizer*.json")], p)[3],
     "has no readable CLIP tokenizer and image processor"),
]

@pytest.mark.parametrize("name,spoil,message", BAD_CLIP_FOLDERS, ids=[b[0] for b in BAD_CLIP_FOLDERS])
def test_a_bad_clip_folder_is_refused_clearly(tmp_path, name, spoil, message):
    from llmcourse.bert import HFFolderError
    from llmcourse.clip import clip_from_pretrained
    folder = tmp_path / "clip"
    _clip_folder(folder)
    target = spoil(folder)
    with pytest.raises(HFFolderError) as e: clip_from_pretrained(target, device="cpu")
    text = str(e.value)
    assert message in text and str(folder) in text, text
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__), "a library traceback is chained"

"""What the lesson 09c bench scripts share: the lesson's invoices, made exactly as its cell makes them, encoded for
training and validation (the test templates are generated but never encoded), and the entity F1 per field."""
import numpy as np
import transformers
from llmcourse.data import minilm_dir
from llmcourse.layoutlm import FIELDS, encode_document, entity_f1, make_documents, make_templates, ocr_noise, split_templates

def lesson_data():
    "The tokenizer and the encoded train and valid documents: 800 training templates x 3, 8 validation templates x 12."
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir()))
    split = split_templates(make_templates(816, seed=1), n_valid=8, n_test=8)
    noise_rng = np.random.default_rng(1)
    docs = {name: [ocr_noise(d, noise_rng) for d in make_documents(ts, 3 if name == "train" else 12, seed=k + 1)]
            for k, (name, ts) in enumerate(split.items())}
    return tok, {name: [encode_document(tok, d) for d in ds] for name, ds in docs.items() if name != "test"}  # test: never encoded

def per_field(true, pred):
    "Entity F1 of each field alone, from word-tag lists."
    only = lambda tags, f: [[t if t[2:] == f else "O" for t in d] for d in tags]
    return {f: entity_f1(only(true, f), only(pred, f)) for f in FIELDS}

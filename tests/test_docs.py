"""The README, the index notebook, the sidebar and the Quarto config stay in step with the course."""
import json, re, tomllib
from pathlib import Path
import pytest
from llmcourse import cli

ROOT = Path(__file__).resolve().parent.parent

def test_readme_is_the_index_notebook():
    assert (ROOT/"README.md").read_text() == cli.index_markdown(ROOT), "README.md differs from nbs/index.ipynb: run `llmcourse docs`"

def test_course_map_and_sidebar_are_up_to_date():
    assert cli.sync_docs(ROOT, write=False) == [], "run `llmcourse docs` and commit the result"

def test_sidebar_lists_exactly_the_notebooks_that_exist():
    listed = set(re.findall(r"(\S+\.ipynb)", (ROOT/"nbs"/"sidebar.yml").read_text()))
    present = {p.name for p in (ROOT/"nbs").glob("*.ipynb")}
    assert listed == present

def test_quarto_config_points_at_its_parts():
    q = (ROOT/"nbs"/"_quarto.yml").read_text()
    for part in ("nbdev.yml", "sidebar.yml"):
        assert part in q and (ROOT/"nbs"/part).exists()

def test_pyproject_is_nbdev3_with_ranges():
    cfg = tomllib.loads((ROOT/"pyproject.toml").read_text())
    assert "nbdev" in cfg["tool"] and not (ROOT/"settings.ini").exists()
    reqs = cfg["project"]["dependencies"] + [r for v in cfg["project"]["optional-dependencies"].values() for r in v]
    assert not [r for r in reqs if "==" in r], "pyproject.toml keeps ranges; pins live in the Makefile"
    for extra in ("dev", "llama", "audio", "full"): assert extra in cfg["project"]["optional-dependencies"]

def test_every_lesson_opens_with_its_badges_and_title():
    url = cli.repository_url(ROOT)
    for nb_path in sorted((ROOT/"nbs").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(nb_path.read_text())
        first = "".join(nb["cells"][0]["source"])
        assert first.startswith("# "), f"{nb_path.name}: the first cell is the title"
        assert cli.badges(nb_path.stem, url) in first, f"{nb_path.name}: Colab/Binder badges missing or wrong"

def test_every_lesson_in_the_course_list_has_a_known_stem():
    for nb_path in (ROOT/"nbs").glob("[0-1][0-9]_*.ipynb"):
        assert nb_path.stem in {l.stem for l in cli.COURSE}, f"{nb_path.name} is not in COURSE (nbs/90_cli.ipynb)"

def test_readme_doctor_block_matches_this_machine():
    readme = (ROOT/"README.md").read_text()
    block = readme.split("## Is this machine ready?", 1)[1].split("```", 2)[1]
    def label(text):  # what a line is about: "python", "mirror", "extra llama", "model minilm", ...
        words = text.replace(":", " ").split()
        return words[:2] if words[0] in ("extra", "model") else words[:1]
    shown = [label(l[9:]) for l in block.strip().splitlines()]
    actual = cli.doctor_lines()
    assert shown == [label(t) for _, t in actual]
    assert not [t for s, t in actual if s == "missing"]

def test_no_deps_list_matches_the_doctor():
    lines = [l.strip() for l in (ROOT/"tools"/"no-deps-requirements.txt").read_text().splitlines()]
    assert tuple(l for l in lines if l and not l.startswith("#")) == cli.NO_DEPS_REQUIREMENTS

"""The lesson linter and the shape of the package: every lesson follows the course's rules, lessons import only
earlier lessons, exported names are unique, no module grows into a lab, and each setup cell installs what its lesson
imports."""
import ast, json, re, shutil, sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path
import pytest
from packaging.requirements import Requirement
from llmcourse import cli

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/"nbs"
LESSONS = [l for l in cli.COURSE if (NBS/f"{l.stem}.ipynb").exists()]
MODULE_LIMIT = 700 # lines; a module over this has grown a lab that wants its own home

@pytest.mark.parametrize("stem", [l.stem for l in LESSONS])
def test_lesson_follows_the_rules(stem):
    problems = cli.lint_lesson(NBS/f"{stem}.ipynb")
    assert not problems, f"{stem} breaks these rules:\n  " + "\n  ".join(problems)

def _break(nb, what):
    "A copy of notebook `nb` with one rule broken."
    nb = json.loads(json.dumps(nb)); cells = nb["cells"]
    def edit(i, f): cells[i]["source"] = f("".join(cells[i]["source"])).splitlines(keepends=True)
    md = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"]
    if what == "title": edit(0, lambda s: "# " + s)
    if what == "badges": edit(0, lambda s: s.replace("colab-badge.svg", "badge.svg"))
    if what == "outcomes": edit(0, lambda s: re.sub("(?i)you will be able to", "you will see how to", s))
    if what == "setup cell": cells[:] = [c for c in cells if not "".join(c["source"]).startswith("#| hide\n# Setup")]
    if what == "arc": edit(md[1], lambda s: s.replace("(02_tokenizers.ipynb", "(elsewhere.ipynb"))
    if what == "summary": [edit(i, lambda s: s.replace("## Summary", "## Recap")) for i in md]
    if what == "figure":
        for i, c in enumerate(cells):
            if c["cell_type"] == "code": edit(i, lambda s: re.sub(cli.FIGURE_CALLS, "draw(", s))
    if what == "exercises": cells[:] = [c for c in cells if not cli.is_solution_cell(c)]
    if what == "no development history": edit(md[-1], lambda s: s + "\nThe issue asked for this on 2026-11-27.")
    if what == "no ../ paths": edit(md[-1], lambda s: s + "\nSee [the data](../data/README.md).")
    if what == "markdown renders": edit(md[-1], lambda s: s + "\n# A second title\n")
    return nb

@pytest.mark.parametrize("rule", ["title", "badges", "outcomes", "setup cell", "arc", "summary", "figure", "exercises",
                                  "no development history", "no ../ paths", "markdown renders"])
def test_the_linter_catches_a_broken_copy(tmp_path, rule):
    # lesson 03 is a good lesson to break: it has a previous and a next lesson
    good = NBS/"03_elmo.ipynb"
    for l in LESSONS: shutil.copy(NBS/f"{l.stem}.ipynb", tmp_path)
    assert not [p for p in cli.lint_lesson(tmp_path/good.name) if p.startswith(rule + ":")], f"{good.name} itself breaks '{rule}'"
    (tmp_path/good.name).write_text(json.dumps(_break(json.loads(good.read_text()), rule)))
    problems = cli.lint_lesson(tmp_path/good.name)
    assert any(p.startswith(rule + ":") for p in problems), f"breaking '{rule}' went unnoticed: {problems}"

def _module_lesson() -> dict[str, str]:
    "module name -> lesson number, from each notebook's default_exp."
    out = {}
    for p in NBS.glob("*.ipynb"):
        for c in json.loads(p.read_text())["cells"]:
            src = "".join(c["source"])
            if m := re.search(r"^#\|\s*default_exp\s+(\S+)", src, re.M): out[m.group(1)] = p.stem.split("_")[0]
            if m := re.search(r"^#\|\s*export\s+(\w+)\s*$", src, re.M): out[m.group(1)] = p.stem.split("_")[0] # a second module
    return out

def _imports_of(module: Path) -> set[str]:
    tree, found = ast.parse(module.read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: found.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("llmcourse."): found.add(node.module.split(".")[1])
            elif node.module == "llmcourse": found.update(a.name for a in node.names)
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("llmcourse."))
    return found

def test_lessons_import_only_earlier_lessons():
    order = _module_lesson()
    bad = []
    for mod, num in order.items():
        for dep in _imports_of(ROOT/"llmcourse"/f"{mod}.py") - {mod, "_modidx"}:
            # a lesson's second module (`#| export name`) may be imported by its first: same lesson, not a later one
            if dep in order and not order[dep] <= num: bad.append(f"{mod} ({num}) imports {dep} ({order[dep]})")
    assert not bad, "a lesson imports a later one:\n  " + "\n  ".join(bad)

def test_exported_names_are_unique():
    seen, clashes = {}, []
    for mod in sorted(_module_lesson()):
        tree = ast.parse((ROOT/"llmcourse"/f"{mod}.py").read_text())
        names = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                      and any(getattr(t, "id", "") == "__all__" for t in n.targets)), [])
        for n in names:
            if n in seen: clashes.append(f"{n}: {seen[n]} and {mod}")
            seen.setdefault(n, mod)
    assert not clashes, "exported names used twice (rename one, or import it from the earlier lesson):\n  " + "\n  ".join(clashes)

@pytest.mark.parametrize("module", sorted(p.name for p in (ROOT/"llmcourse").glob("*.py") if p.name != "_modidx.py"))
def test_no_module_grows_into_a_lab(module):
    n = len((ROOT/"llmcourse"/module).read_text().splitlines())
    assert n <= MODULE_LIMIT, f"llmcourse/{module} has {n} lines (limit {MODULE_LIMIT}): split what is not the lesson's model into its own module"

def _third_party_imports(nb_path: Path) -> set[str]:
    found = set()
    for c in json.loads(nb_path.read_text())["cells"]:
        if c["cell_type"] != "code": continue
        src = "\n".join(l for l in "".join(c["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
        try: tree = ast.parse(src)
        except SyntaxError: continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import): found.update(a.name.split(".")[0] for a in node.names)
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module: found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "llmcourse"}

def _requirements(extras) -> set[str]:
    "The distributions that `llmcourse[extras]` declares, following extras that name other extras."
    names, extras, todo = set(), set(extras), list(extras)
    specs = [Requirement(s) for s in requires("llmcourse") or []]
    while True:
        for r in specs:
            extra = re.search(r'extra\s*==\s*"([^"]+)"', str(r.marker)).group(1) if r.marker and "extra" in str(r.marker) else ""
            if extra not in ("", *extras): continue
            # requirements that only apply to other Pythons (tomli before 3.11) count as declared
            if r.name == "llmcourse": todo += [e for e in r.extras if e not in extras]; extras |= set(r.extras)
            else: names.add(r.name.lower().replace("_", "-"))
        if not todo: return names
        todo = []

@pytest.mark.parametrize("stem", [l.stem for l in LESSONS])
def test_setup_cell_installs_what_the_lesson_imports(stem):
    l = cli.lesson(stem)
    pip = cli.install_commands(stem)[0]
    extras = re.search(r"llmcourse\[([^\]]*)\]", pip[-1]).group(1).split(",")
    have = _requirements(extras) | {r.split("<")[0].split(">")[0].split("=")[0].lower() for c in cli.install_commands(stem)[1:] for r in c[4:]}
    dists = packages_distributions()
    missing = []
    for mod in sorted(_third_party_imports(NBS/f"{stem}.ipynb")):
        owners = {d.lower().replace("_", "-") for d in dists.get(mod, [])}
        if mod.lower().replace("_", "-") in have: continue
        if not owners: missing.append(f"{mod} (no installed distribution provides it)"); continue
        # a module is covered when a declared requirement provides it, or a requirement of one (torch brings numpy, ...)
        if owners & have: continue
        if any(owners & _deps_closure(h) for h in have): continue
        missing.append(f"{mod} (from {', '.join(sorted(owners))})")
    assert not missing, f"{stem} imports what its setup cell does not install (extras {extras}):\n  " + "\n  ".join(missing)

_closure_cache = {}
def _deps_closure(dist: str) -> set[str]:
    "The distributions `dist` requires, transitively (as installed here)."
    if dist in _closure_cache: return _closure_cache[dist]
    _closure_cache[dist] = seen = set()
    todo = [dist]
    while todo:
        d = todo.pop()
        try: reqs = requires(d) or []
        except Exception: continue
        for spec in reqs:
            r = Requirement(spec)
            if r.marker and "extra" in str(r.marker): continue
            n = r.name.lower().replace("_", "-")
            if n not in seen: seen.add(n); todo.append(n)
    return seen

#!/usr/bin/env python
"""Fail when the notebooks are not clean or the library is not in step with them.

Runs `nbdev-clean` and `nbdev-export` and compares every file under nbs/ and llmcourse/ before and after: any change
means someone committed an unclean notebook or edited a notebook without exporting (or edited the library by hand).
The files are left as the tools wrote them, so `git diff` shows what to commit.
"""
import hashlib, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def snapshot():
    files = [p for d in ("nbs", "llmcourse") for p in (root/d).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

before = snapshot()
for cmd in (["nbdev-clean"], ["nbdev-export"]):
    subprocess.run(cmd, cwd=root, check=True)
after = snapshot()
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
if changed:
    print("nbdev-clean / nbdev-export changed these files; run them and commit the result:")
    for c in changed: print("   ", c)
    sys.exit(1)
print(f"notebooks clean and library in step ({len(after)} files checked)")

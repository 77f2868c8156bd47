# The README's commands live here, and nowhere else.
#   make course   execute every lesson in quick mode (offline with LLMCOURSE_MIRROR) and print a timing table
#   make test     notebooks clean and in sync with the library, every lesson as a test, then pytest
#   make lab      open JupyterLab on nbs/
# Set LLMCOURSE_MIRROR to a folder or URL prefix that mirrors the data sets to run without a network,
# e.g. `LLMCOURSE_MIRROR=../shared/data make test`.

PYTHON ?= python
NBDEV_WORKERS ?= 2
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

export LLMCOURSE_MODE ?= quick
export LLMCOURSE_PROGRESS ?= 0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg
# nbdev-test runs each notebook from nbs/: make a relative mirror folder absolute first
ifneq ($(strip $(LLMCOURSE_MIRROR)),)
ifeq ($(findstring ://,$(LLMCOURSE_MIRROR)),)
export LLMCOURSE_MIRROR := $(abspath $(LLMCOURSE_MIRROR))
endif
endif

.PHONY: setup course test check-sync nbtest pytest docs lab

# torch first, from the pinned pair (on this machine's disk); then llama-cpp-python from a wheel built once for
# this CPU and cached; then the package with every extra the quick course and the tests use; then the two packages
# whose declared requirements would break the rest (see tools/no-deps-requirements.txt); last Debian's chromium for the
# browser test (tests/test_browser.py), when we are root with apt-get (else it says what to run).
setup:
	$(PYTHON) -m pip install -q $(TORCH_PINS)
	PYTHON=$(PYTHON) bash tools/install_llama_cpp.sh
	$(PYTHON) -m pip install -q -e ".[dev,all]"
	$(PYTHON) -m pip install -q --no-deps -r tools/no-deps-requirements.txt
	bash tools/install_browser.sh

course: setup
	llmcourse run

check-sync:
	$(PYTHON) tools/check_sync.py

# each notebook in its own nbdev-test process (as a learner's kernel would be): nbdev-test's own workers are reused
# across notebooks, and a library one lesson imports (fastai patches torch.Tensor) must not change the next lesson.
# Lesson 12 starts first and lesson 13 last: 13's arena loads the models 12 trains and caches in LLMCOURSE_HOME.
nbtest:
	{ echo nbs/12_assistant.ipynb; ls -r nbs/*.ipynb | grep -v -e 12_assistant -e 13_leaderboard; echo nbs/13_leaderboard.ipynb; } \
	  | xargs -P $(NBDEV_WORKERS) -n 1 nbdev-test --timing

pytest:
	$(PYTHON) -m pytest -q -p no:cacheprovider --timeout 900

# the tests never reach for a public address: data comes from LLMCOURSE_MIRROR or the local store
test: export LLMCOURSE_OFFLINE = 1
test: setup check-sync nbtest pytest

docs:
	llmcourse docs

lab: setup
	$(PYTHON) -m pip install -q jupyterlab
	$(PYTHON) -m jupyter lab nbs/

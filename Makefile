# The README's commands live here, and nowhere else.
#   make course   execute every lesson in quick mode (offline with LLMCOURSE_MIRROR) and print a timing table
#   make test     notebooks clean and in sync with the library, then pytest: every lesson run from the installed wheel
#                 outside the repository (tests/test_course.py), the lesson linter, the unit tests, the browser test
#   make slow     the long runs: every slow cell and slow test, then the bench results they feed
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
# OpenMP threads wait by sleeping, not spinning: with two lessons side by side, spinning threads of one stall the
# other (llama.cpp ran 13x slower in the browser test on a busy machine)
export OMP_WAIT_POLICY ?= PASSIVE
# lessons run in folders of their own: make a relative mirror folder absolute first
ifneq ($(strip $(LLMCOURSE_MIRROR)),)
ifeq ($(findstring ://,$(LLMCOURSE_MIRROR)),)
export LLMCOURSE_MIRROR := $(abspath $(LLMCOURSE_MIRROR))
endif
endif

.PHONY: setup course test check-sync nbtest pytest slow docs lab

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

# every lesson in quick mode, each in a process and a folder of its own, two at a time; a timing table at the end
course: setup
	llmcourse run --jobs $(NBDEV_WORKERS)

check-sync:
	$(PYTHON) tools/check_sync.py

# the lessons alone, run exactly as `make test` runs them: from the wheel, outside the repository
nbtest:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/test_course.py

pytest:
	$(PYTHON) -m pytest -q -p no:cacheprovider --timeout 900

# the tests never reach for a public address: data comes from LLMCOURSE_MIRROR or the local store
test: export LLMCOURSE_OFFLINE = 1
test: setup check-sync pytest

# the long runs: every slow cell (no 600 s limit per cell), every slow test, then bench/ results regenerated.
# They take hours, so an interrupted run resumes: each lesson and test that passed is recorded under SLOW_BUILD with
# the notebook, test and package code it passed with, and `make slow` again runs only what changed or had not passed
# (`rm -rf _build/slow` starts afresh).
SLOW_BUILD ?= _build/slow
slow: export LLMCOURSE_OFFLINE = 1
slow: setup
	llmcourse run --slow --resume --build $(SLOW_BUILD) --jobs $(NBDEV_WORKERS) --cell-timeout 14400
	$(PYTHON) -m pytest -q -p no:cacheprovider -m slow --timeout 14400 --resume-file $(SLOW_BUILD)/slow-tests.json
	$(PYTHON) bench/collect_results.py

docs:
	llmcourse docs

lab: setup
	$(PYTHON) -m pip install -q jupyterlab
	$(PYTHON) -m jupyter lab nbs/

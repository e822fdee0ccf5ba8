# The two commands: `make demo` runs the main job, `make test` runs every check.
# Both create .venv and install what they need; nothing is installed by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BROWSER := /usr/bin/chromium /usr/bin/chromedriver

.PHONY: install demo test lint typecheck unit reliability bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: pip takes this CPU build from the machine's disk.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[local,mpnet,dev,bench,openai-agents,langchain,mcp]'
	touch $(STAMP)

install: $(STAMP)

# The audit page's browser test drives Debian's chromium through its chromedriver; these
# machines run as root, and the packages are installed only when missing.
$(BROWSER):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

demo: install
	$(BIN)/longthread demo

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: lint typecheck $(BROWSER)
	$(BIN)/pytest -q

reliability: install
	$(BIN)/pytest -q -m slow tests/reliability

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two commands for a newcomer (see README.md):
#   make serve   set everything up, prepare the default offline models, start the service
#   make test    set everything up, prepare the test models, run lint, types, contracts and tests
#
# Works on Debian 12 with Python >= 3.11. Debian packages are installed with apt-get (through
# sudo when not root). Models go to $VOICE_HOME (default: ~/.cache/voice-assistant).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := espeak-ng libportaudio2 sox
# Only the tests need a browser (the web page is tested in headless Chromium) and HAProxy (the
# scale-out test puts two replicas behind it).
TEST_DEBIAN_PACKAGES := chromium haproxy
# Models the test suite uses: the defaults (the 1.5B one writes replies that may call tools)
# plus the small SmolLM2 for conversion tests.
TEST_MODELS := whisper-base qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct \
	en_US-joe-medium smart-turn-v3.2 smollm2-135m-instruct

.PHONY: serve test setup system-packages models lint clean

serve: setup
	$(BIN)/voice models prepare
	$(BIN)/voice serve

test: setup
	@$(MAKE) --no-print-directory system-packages DEBIAN_PACKAGES="$(TEST_DEBIAN_PACKAGES)"
	$(BIN)/voice --no-progress models prepare $(TEST_MODELS)
	$(MAKE) lint
	@# pytest exits 5 when it collects nothing; an empty run must not pass as green.
	VOICE_REQUIRE_MODELS=1 $(BIN)/python -m pytest; rc=$$?; \
	  if [ $$rc = 5 ]; then echo 'pytest collected no tests: failing on purpose'; exit 1; fi; exit $$rc

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two entry points: `make demo` and `make test`. Each builds .venv from nothing when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv peers lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,peers]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/opswatch demo

# Debian packages the tests drive, as command:package; a test that needs one fails when it is missing.
PEERS := chromium:chromium chromedriver:chromium-driver prometheus:prometheus \
	prometheus-node-exporter:prometheus-node-exporter victoria-metrics:victoria-metrics \
	prometheus-alertmanager:prometheus-alertmanager

peers:
	@missing=""; \
	for pair in $(PEERS); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian peers:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: $(STAMP) peers
	$(BIN)/python -m pytest -q

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/opswatch-lock && $(PYTHON) -m venv /tmp/opswatch-lock
	/tmp/opswatch-lock/bin/pip install --quiet -e '.[test,peers]'
	/tmp/opswatch-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache

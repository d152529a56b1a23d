# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint test-slow bench venv clean sandbox-tool prometheus-tool

$(STAMP): setup.cfg constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=compat -e '.[local,test,bench,train]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP) sandbox-tool

# The executor runs every command inside bubblewrap (docs/safety.md) and refuses commands without
# it. Installed from Debian's package when missing and we may (root, or sudo without a password);
# when bwrap is already there nothing is asked of apt, so machines without apt still work.
sandbox-tool:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=sudo; \
	  else echo "bwrap (Debian package bubblewrap) is missing and cannot be installed without" \
	    "root: install it, or set OCTOLLM_EXECUTOR_SANDBOX=none for development only" >&2; exit 1; fi; \
	  echo "installing bubblewrap (the executor's sandbox)"; \
	  $$sudo apt-get install -y --no-install-recommends bubblewrap \
	    || { $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends bubblewrap; }; }

# promtool checks and unit-tests the alert rules (deploy/prometheus) in `make lint`; the slow
# dashboard test runs a real Prometheus. Both come with Debian's package `prometheus`, installed
# like bubblewrap above (only when missing; its service is not started: nothing here runs it).
prometheus-tool:
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=sudo; \
	  else echo "promtool (Debian package prometheus) is missing and cannot be installed" \
	    "without root: install it" >&2; exit 1; fi; \
	  echo "installing prometheus (promtool checks the alert rules)"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    prometheus \
	    || { $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install \
	      -y --no-install-recommends prometheus; }; }

run: $(STAMP) sandbox-tool
	$(BIN)/octollm run

# The linters run first: they take seconds, the suite minutes. The suite runs under coverage,
# every process it starts included ([coverage:run] in setup.cfg); the report fails under 80%.
test: lint sandbox-tool
	rm -rf var/coverage && mkdir -p var/coverage
	$(BIN)/coverage run -m pytest -m "not slow"
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

lint: $(STAMP) prometheus-tool
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	promtool check rules deploy/prometheus/rules.yml
	promtool test rules deploy/prometheus/rules.test.yml

test-slow: $(STAMP) sandbox-tool
	$(BIN)/python -m pytest -m slow

bench: $(STAMP) sandbox-tool
	$(BIN)/python -m bench.all

clean:
	rm -rf $(VENV) var

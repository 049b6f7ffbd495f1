# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test demo tools install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# promtool (Debian package prometheus) checks the exposition format in the tests.
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian package prometheus (promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

test: install tools
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/pizza-probe demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

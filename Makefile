# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: test lint demo tools install clean k8s-rules

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The tests start a real Prometheus and Alertmanager on loopback, use promtool and amtool, and
# check the compose file with docker-compose, and make a self-signed certificate with openssl:
# Debian packages prometheus, prometheus-alertmanager, docker-compose and openssl.
# tests/test_image.py builds and runs the image on a private Docker engine (docker.io: dockerd,
# containerd, runc, the docker client) from a base image it makes with debootstrap. The system
# dockerd must not start at install (it would make a docker0 bridge): policy-rc.d denies it.
# tests/test_status_page.py watches the status page in a headless chromium (Debian's package).
TOOLS_PACKAGES := prometheus prometheus-alertmanager docker-compose openssl docker.io debootstrap \
                  chromium
tools:
	@PATH="$$PATH:/usr/sbin:/sbin"; \
	if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus-alertmanager >/dev/null 2>&1 \
	    || ! command -v docker-compose >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 \
	    || ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 \
	    || ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Debian packages $(TOOLS_PACKAGES)"; \
	  created=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
	    && created=1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(TOOLS_PACKAGES) >/dev/null; status=$$?; \
	  if [ -n "$$created" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi

# ruff gates the whole tree and mypy exporter/ (settings in pyproject.toml); the suite runs after them.
lint: install
	$(BIN)/ruff check
	$(BIN)/mypy

test: install tools lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/pizza-probe demo $(DEMO_ARGS)

# deploy/kubernetes/prometheusrule.yaml is generated from alerts/pizza-probe.rules.yml.
k8s-rules:
	$(PYTHON) deploy/kubernetes/generate_prometheusrule.py

clean:
	rm -rf $(VENV) build *.egg-info

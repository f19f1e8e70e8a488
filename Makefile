# Two commands on a fresh Debian machine with python3 and make:
#   make lab    set everything up and open JupyterLab on notebooks/
#   make test   set everything up and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8888

.PHONY: lab test setup-lab setup-test node-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian, apt-get install -y python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.lab-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[lab]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[lab,test]'
	touch $@

setup-lab: $(VENV)/.lab-installed
setup-test: $(VENV)/.test-installed node-deps

# The official Node.js implementation (pinned by siolab/node/package-lock.json), installed into the
# package's siolab/node/node_modules, where siolab.reference runs it; the test fixtures in tests/node
# use the same install through a link.
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		{ [ siolab/node/node_modules/.package-lock.json -nt siolab/node/package-lock.json ] || \
		  (cd siolab/node && npm ci --no-audit --no-fund --loglevel=error); } && \
		{ [ -L tests/node/node_modules ] || { rm -rf tests/node/node_modules && \
		  ln -s ../../siolab/node/node_modules tests/node/node_modules; }; }; \
	else echo "npm not found: interop tests with the Node.js reference implementation will be skipped"; fi

# 127.0.0.1 only; the URL with its token is printed; no browser is opened where there is no display;
# root (a container, a CI box) needs --allow-root.
lab: setup-lab node-deps
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
		$$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY$$BROWSER" ] || [ "$$(uname)" = Darwin ] || echo --no-browser ) \
		$$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: setup-test
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) siolab/node/node_modules tests/node/node_modules siolab/widgets/static/vendor

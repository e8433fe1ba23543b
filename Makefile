# Everything runs offline: no Pulumi CLI, no AWS credentials, no network beyond the package index for `setup`.
VENV ?= .venv
PY := $(VENV)/bin/python
STACK ?= dev
FORMAT ?= tree

.PHONY: setup test plan plans policy clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

test: setup
	$(PY) -m pytest -q

plan: setup
	@$(PY) -m offline.plan --stack $(STACK) --format $(FORMAT)

policy: setup
	@$(PY) -m offline.policy_check --stack $(STACK)

# One JSON plan per stack under .plan/, e.g. to diff against another revision's.
plans: setup
	@mkdir -p .plan
	@for s in dev staging prod; do $(PY) -m offline.plan --stack $$s --format json > .plan/$$s.json || exit 1; done
	@echo "wrote .plan/dev.json .plan/staging.json .plan/prod.json"

clean:
	rm -rf $(VENV) .plan .pytest_cache

# Everything runs offline: no Pulumi CLI, no AWS credentials, no network beyond the package index for `setup`.
# `demo`, `bench` and the workload tests start real local services (S3, Kafka, MLflow, Prometheus) on 127.0.0.1.
VENV ?= .venv
SCANNER_VENV ?= .venv-checkov
PY := $(VENV)/bin/python
STACK ?= dev
FORMAT ?= tree

.PHONY: setup test plan plans policy demo bench clean summary diff cost prices

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

# Monthly cost of STACK from its offline plan and offline/prices.json: idle floor and maximum, line by line, with
# the assumptions. FORMAT=json for JSON. A price the table marks unsourced counts as $0 and makes the totals a lower
# bound (said so); STRICT=1 fails on it instead.
cost: setup
	@$(PY) -m offline.cost --stack $(STACK) $(if $(filter json,$(FORMAT)),--format json) $(if $(STRICT),--strict)

# Refresh offline/prices.json from the AWS Price List API and EC2 spot price history (needs AWS credentials).
prices: setup
	@$(PY) -m offline.prices_refresh

# One JSON plan per stack under .plan/, e.g. to diff against another revision's.
plans: setup
	@mkdir -p .plan
	@for s in dev staging prod; do $(PY) -m offline.plan --stack $$s --format json > .plan/$$s.json || exit 1; done
	@echo "wrote .plan/dev.json .plan/staging.json .plan/prod.json"

# What the working tree changes in each stack against BASE (default origin/main if it exists, else main): adds,
# changes, deletes and replacements from two offline plans, stateful replacements first. FORMAT=json for JSON;
# STACKS=dev,prod for some stacks only.
diff: setup
	@$(PY) -m offline.diff $(if $(BASE),--base $(BASE)) $(if $(STACKS),--stacks $(STACKS)) \
		$(if $(filter json,$(FORMAT)),--format json)

# The pull-request comment, as CI renders it, in $(SUMMARY_DIR)/comment.md: the working tree against BASE (as for
# `diff`). A step that fails leaves the others' results, and the comment says what is missing. TESTS=success|failure
# adds the test suite's outcome.
SUMMARY_DIR ?= .plan/pr-summary
summary: setup
	@mkdir -p $(SUMMARY_DIR)
	@$(MAKE) -s diff $(if $(BASE),BASE=$(BASE)) FORMAT=json > $(SUMMARY_DIR)/diff.json || true
	@for s in dev staging prod; do \
		$(MAKE) -s cost STACK=$$s FORMAT=json > $(SUMMARY_DIR)/cost-$$s.json || true; \
		$(PY) -m offline.policy_check --stack $$s --format json > $(SUMMARY_DIR)/policy-$$s.json || true; \
	done
	@$(PY) -m offline.pr_comment --diff $(SUMMARY_DIR)/diff.json --out $(SUMMARY_DIR)/comment.md \
		$(foreach s,dev staging prod,--policy $(s)=$(SUMMARY_DIR)/policy-$(s).json \
			--cost $(s)=$(SUMMARY_DIR)/cost-$(s).json) \
		$(if $(TESTS),--tests $(TESTS)) $(if $(RUN_URL),--run-url $(RUN_URL))
	@echo "wrote $(SUMMARY_DIR)/comment.md"

clean:
	rm -rf $(VENV) $(SCANNER_VENV) .plan .pytest_cache

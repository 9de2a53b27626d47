# Tarmac: `make run` starts a demo server, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TARMAC := $(BIN)/tarmac
STAMP := $(VENV)/.installed
# GitHub's REST description and example webhooks, from npm (tests/github/package-lock.json).
GITHUB_MATERIAL := tests/github/node_modules/.installed
# The do-nothing Probot app the intake bench compares with (bench/probot/package-lock.json).
PROBOT := bench/probot/node_modules/.installed
PYTEST_WORKERS ?= 2
# make run's port: `make run PORT=9000`, or TARMAC_PORT from the environment.
TARMAC_PORT ?= 8080
PORT ?= $(TARMAC_PORT)
DEMO_URL := http://127.0.0.1:$(PORT)
DEMO_PUBLIC_URL = $(or $(TARMAC_PUBLIC_URL),$(DEMO_URL))
DEMO_TOKEN ?= .tarmac-demo-token
# The App registration tests drive Debian's Chromium through Playwright, which must never
# download a browser of its own.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

export TARMAC_CONFIG ?= tarmac.example.yml
export TARMAC_DATABASE_URL ?= sqlite+aiosqlite:///tarmac.db

.PHONY: run test lint typecheck pytest install migrate clean bench soak github-material chromium docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(GITHUB_MATERIAL): tests/github/package.json tests/github/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ echo "node and npm are missing (the tests take GitHub's material from npm): apt-get install nodejs npm" >&2; exit 1; }
	cd tests/github && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

github-material: $(GITHUB_MATERIAL)

$(PROBOT): bench/probot/package.json bench/probot/package-lock.json
	cd bench/probot && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

chromium:
	@test -x $(CHROMIUM) || \
		{ echo "$(CHROMIUM) is missing (the GitHub App registration tests drive it): apt-get install chromium" >&2; exit 1; }

migrate: $(STAMP)
	$(TARMAC) migrate

# The token list is read to its end (grep without -q), and a token goes to the file only once
# `token create` has succeeded.
run: $(STAMP)
	@$(TARMAC) migrate
	@$(TARMAC) check-config
	@if [ ! -s $(DEMO_TOKEN) ] || ! $(TARMAC) token list | grep '^demo ' >/dev/null; then \
		$(TARMAC) token revoke demo >/dev/null 2>&1 || true; \
		created="$$($(TARMAC) token create demo --actor demo@example.com)" || exit 1; \
		printf '%s\n' "$$created" | tail -n 1 > $(DEMO_TOKEN); \
	fi
	@echo
	@echo "Demo token (kept in $(DEMO_TOKEN)). Try, once the server is up:"
	@echo "  curl -s -X POST -H \"Authorization: Bearer \$$(cat $(DEMO_TOKEN))\" -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"repo\": \"acme/backend\", \"commit\": \"0123456789abcdef0123456789abcdef01234567\"}' \\"
	@echo "    $(DEMO_URL)/api/releases/Backend/releases/v1.0.0-rc1"
	@echo "  curl -s -H \"Authorization: Bearer \$$(cat $(DEMO_TOKEN))\" $(DEMO_URL)/api/releases/Backend/environments"
	@echo
	@echo "Dashboard: $(DEMO_URL)/ - sign in with the demo token (cat $(DEMO_TOKEN)), or with"
	@echo "  any token from '$(TARMAC) token create NAME [--project P]'; its project scope applies."
	@echo
	TARMAC_PUBLIC_URL=$(DEMO_PUBLIC_URL) $(TARMAC) serve --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check bot api tests $(wildcard bench)
	$(BIN)/ruff format --check bot api tests $(wildcard bench)

# The benchmarks too: make test does not run them, so only this finds one that the code has left
# behind (the tests they import are checked by pytest, not here).
typecheck: $(STAMP)
	$(BIN)/mypy --strict bot api
	$(BIN)/mypy --strict --follow-imports=silent bench

# Two workers (this machine has two cores); tests/databases.py picks each test's databases.
pytest: $(STAMP) $(GITHUB_MATERIAL) chromium
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test: lint typecheck pytest

# What make test leaves out: the long fault runs (many kills, more deployments, 1 100 half-open
# connections against a 1 024 open-file limit), then the PostgreSQL half of the tests make test
# runs on SQLite only. make test + make soak = every test on both databases. .ci/run runs both.
soak: $(STAMP) $(GITHUB_MATERIAL)
	$(BIN)/pytest -q -m soak tests/test_faults.py tests/test_http_hardening.py tests/test_notification_faults.py tests/test_shipped_faults.py $(PYTEST_ARGS)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal --databases=rest $(PYTEST_ARGS)

# Benchmarks (needs wrk and the local PostgreSQL): a table on stdout, the same figures in bench/results.json.
bench: $(STAMP) $(GITHUB_MATERIAL)
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(PROBOT) || \
		echo "Probot could not be installed from npm: the intake bench runs without it" >&2
	$(BIN)/python -m bench.run

# docs/api.md, rendered from the OpenAPI document (tests/test_api_reference.py checks it), and
# docs/graphql.graphql, the GraphQL schema's SDL (tests/test_graphql.py checks it).
docs: $(STAMP)
	$(BIN)/python -m api.reference
	$(BIN)/python -m api.graphql.sdl

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache tests/github/node_modules bench/probot/node_modules

# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run serve test test-sqlite test-postgres contract bench lint fmt

## Build, then run the gateway simulator and the service with demo data (fresh SQLite database).
run:
	$(CARGO) run --bin supervisor -- demo

## Run the service alone (settings/local.toml; SQLite at data/supervisor.db by default).
serve:
	$(CARGO) run --bin supervisor -- serve

## All tests: on SQLite, then on PostgreSQL when it is reachable
## (REQUIRE_POSTGRES=1 turns "not reachable" into a failure).
test: test-sqlite test-postgres

test-sqlite:
	env -u DATABASE_URL $(CARGO) test --workspace

test-postgres:
	@if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
		if command -v psql >/dev/null; then \
			psql "$(PG_URL)" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'sup_test_%'" \
			| while read -r db; do psql "$(PG_URL)" -qc "DROP DATABASE IF EXISTS \"$$db\"" >/dev/null; done; \
		fi; \
		echo "== PostgreSQL leg ($(PG_URL))"; \
		DATABASE_URL="$(PG_URL)" $(CARGO) test --workspace; \
	elif [ "$${REQUIRE_POSTGRES:-0}" = 1 ]; then \
		echo "PostgreSQL is not reachable at 127.0.0.1:5432 and REQUIRE_POSTGRES=1"; exit 1; \
	else \
		echo "PostgreSQL is not reachable at 127.0.0.1:5432: skipping the PostgreSQL leg"; \
	fi

## The OpenAPI contract: schemathesis against the running service and the simulator.
contract:
	$(CARGO) build --bin supervisor
	bash .ci/schemathesis.sh "$${CARGO_TARGET_DIR:-target}/debug/supervisor"

## Benchmark on a release build: prints one JSON line (BENCHMARKS.md explains the figures).
## Default load S=1000 symbols, K=50 strategies, V=20 viewers, 10 s, firehose; override with
## e.g. BENCH_ARGS="--symbols 3000 --viewers 0" or BENCH_ARGS="--rate 20000 --duration 600".
## PROFILE=quick measures the quick build profile instead of the release build (Cargo.toml).
BENCH_ARGS ?=
PROFILE ?= release
bench:
	$(CARGO) run --profile $(PROFILE) --bin supervisor -- bench $(BENCH_ARGS)

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

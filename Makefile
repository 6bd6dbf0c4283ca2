# letterpress: the two set-up commands are `make run` and `make test`.
# Only the Rust toolchain is assumed; anything else is optional and the
# targets that need it say how to get it.

CARGO ?= cargo
# Honour CARGO_TARGET_DIR, as cargo does.
BIN := $(or $(CARGO_TARGET_DIR),target)/debug/letterpress

.PHONY: all build run test bench bench-e2e bench-dkim lint serve screenshots clean fuzz

all: build

build:
	$(CARGO) build --bin letterpress

## The main job on the embedded defaults (SQLite + file transport): create the
## database, load the sample list and deliver the sample issue into outbox/.
## Run twice, it delivers nothing twice.
run: build
	$(BIN) migrate
	$(BIN) subscribers import examples/subscribers.csv
	$(BIN) render examples/issue.md --out out/preview
	$(BIN) send examples/issue.md --yes
	$(BIN) status
	@echo
	@echo "Delivered messages: outbox/<slug>/*.eml   HTML preview: out/preview/email.html"

## The whole test suite. A test that needs what only the Rust toolchain does
## not bring (PostgreSQL via TEST_DATABASE_URL, dkimpy, ../shared/corpus) says
## "skipped: ..." without it, or fails when LP_TEST_REQUIRE names it
## (e.g. LP_TEST_REQUIRE=postgres,dkim,corpus, or all), as .ci/run does.
test:
	@if [ -z "$$TEST_DATABASE_URL" ]; then echo "note: TEST_DATABASE_URL is not set: PostgreSQL tests will be skipped (or fail, if LP_TEST_REQUIRE names postgres)"; fi
	$(CARGO) test --workspace

## Criterion benchmarks for functions, then the end-to-end delivery bench.
bench:
	$(CARGO) bench -p letterpress-composer
	$(CARGO) bench -p letterpress-store
	$(MAKE) bench-dkim
	$(MAKE) bench-e2e

## DKIM signing of a 35 KB message next to a bare RSA-2048 signature, then
## `openssl speed rsa2048` right after, for the physical reference.
bench-dkim:
	$(CARGO) bench -p letterpress-dkim
	@if command -v openssl >/dev/null; then openssl speed -seconds 3 rsa2048 2>/dev/null | tail -2; \
	else echo "skipped: openssl speed (no openssl on PATH)"; fi

## Delivery to postfix's smtp-sink vs smtp-source (apt-get install postfix),
## DKIM-signed (RSA-2048, a key it generates) and unsigned, SQLite and, with
## TEST_DATABASE_URL or LP_BENCH_POSTGRES set, PostgreSQL: msgs/s, the ratio,
## CPU s/1000 msgs of ours and smtp-source's (wait4), openssl speed rsa2048,
## dkimpy on a sample, peak RSS at 100k and 1M subscribers. Quick run:
## LP_BENCH_N=20000 LP_BENCH_BIG=0 LP_BENCH_ROUNDS=1 make bench-e2e (see benches/README.md).
## `cargo run` finds the binaries wherever CARGO_TARGET_DIR puts them.
bench-e2e:
	$(CARGO) build --release -p letterpress -p letterpress-bench --bins
	$(CARGO) run --release --quiet -p letterpress-bench

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Fuzz the composer (front matter + shortcodes + Markdown -> compose) for
## FUZZ_TIME seconds (default 60) with cargo-fuzz, which needs the nightly
## toolchain and `cargo install cargo-fuzz`. fuzz/ is a workspace of its
## own: `cargo test --workspace` and CI never build it. New inputs go to
## fuzz/corpus/compose (seeded from the composer's fixtures), crashes to
## fuzz/artifacts/compose; an input over 10 s counts as a hang.
FUZZ_TIME ?= 60
fuzz:
	mkdir -p fuzz/corpus/compose
	$(CARGO) +nightly fuzz run compose fuzz/corpus/compose crates/composer/tests/fixtures/site/issues -- \
		-max_total_time=$(FUZZ_TIME) -timeout=10 -dict=fuzz/compose.dict

## HTTP server + scheduler + worker on the embedded defaults.
serve: build
	$(BIN) serve

## Screenshots of the rendered sample (or ISSUE=...) at 600 and 375 px, in the
## light and the dark colour scheme, with headless Chromium (installed from
## Debian's packages when missing and root). tests/cli/appearance.rs checks
## WCAG AA contrast on the rendered page in both schemes.
ISSUE ?= examples/issue.md
screenshots: build
	$(BIN) render $(ISSUE) --out out/screenshots
	bash scripts/screenshots.sh out/screenshots/email.html out/screenshots

## Screenshots of the pages `serve` shows a reader (unsubscribe, confirm, and
## what their POSTs answer) at 375 and 800 px with headless Chromium, into
## out/pages/ (installed from Debian's packages when missing and root).
.PHONY: screenshots-pages
screenshots-pages: build
	bash scripts/page-screenshots.sh out/pages

clean:
	rm -rf data outbox out

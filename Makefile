# Conveniences; scripts/test is the source of truth for what CI runs.
.PHONY: test build fuzz bench demo
test:
	scripts/test
build:
	go build -o bin/moat ./cmd/moat
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} scripts/test
bench:
	bench/run.sh
demo:
	go run ./cmd/moat demo

# leitstand: the two commands a fresh machine needs are `make run` and `make test`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run build test bench lint

## run: build and run the daemon on the embedded default (loopback, events to ./data/events)
run: build
	./bin/leitstand run

## build: build bin/leitstand
build:
	go build -ldflags "$(LDFLAGS)" -o bin/leitstand ./cmd/leitstand

## test: the whole suite, integration tests with real peers included
test:
	scripts/test

## bench: the micro-benchmarks beside the code
bench:
	go test -run '^$$' -bench . -benchmem ./...

## lint: gofmt, go vet, staticcheck
lint:
	scripts/test lint

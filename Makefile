# leitstand: the two commands a fresh machine needs are `make run` and `make test`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run build test bench bench-whole bench-whole-full lint image manifests

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

## bench-whole: whole-process benchmark, leitstand vs rsyslog vs syslog-ng, same input (quick, ~2 min; bench/README.md)
bench-whole:
	bench/run quick

## bench-whole-full: the same with 1M messages per case, 3 runs, UDP at 3 rates (~15 min); results like bench/RESULTS.md
bench-whole-full:
	bench/run full

## lint: gofmt, go vet, staticcheck
lint:
	scripts/test lint

IMAGE ?= ghcr.io/leitstand/leitstand
CONTAINER_TOOL ?= docker

## image: build the container image $(IMAGE):$(VERSION) from deploy/container/Dockerfile (docker with BuildKit, or CONTAINER_TOOL=podman)
image:
	$(CONTAINER_TOOL) build -f deploy/container/Dockerfile \
		$(if $(filter podman,$(notdir $(CONTAINER_TOOL))),--ignorefile deploy/container/Dockerfile.dockerignore) \
		--build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

## manifests: re-render deploy/kubernetes (golden files, copied rules and dashboards, PrometheusRules)
manifests:
	go test ./deploy/kubernetes -count=1 -update

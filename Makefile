# imgforge developer targets. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/imgforge-tools
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := $(TOOLS_DIR)/bin/golangci-lint
# The Packer plugin is its own Go module (it pulls in hundreds of modules).
PLUGIN := packer-plugin-imgforge
PACKER := $(TOOLS_DIR)/bin/packer
PACKER_SDC := $(TOOLS_DIR)/bin/packer-sdc
# The platforms make plugin-release builds the Packer plugin for (imgforge builds on Linux only).
PLUGIN_ARCHES ?= amd64 arm64
SYFT := $(TOOLS_DIR)/bin/syft
COSIGN := $(TOOLS_DIR)/bin/cosign

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## install what builds and tests need (Debian packages; run as root)
	./hack/setup.sh

.PHONY: build
build: ## build bin/imgforge and bin/imgforge-agent (static, reproducible)
	$(GO) build -o bin/imgforge ./cmd/imgforge
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w -buildid=' -o bin/imgforge-agent ./cmd/imgforge-agent

# -parallel 64: every e2e test is parallel, and the tests' own slots (the
# two cores; test/e2e/boot_test.go) decide what runs at once. -p 1: one
# package at a time, so that go test prints the e2e tests' lines as they
# come rather than when the package ends.
.PHONY: test
test: syft-tool cosign-tool ## the whole test suite: unit tests, then end-to-end builds against the Debian mirror, then the Packer plugin
	SYFT=$(SYFT) COSIGN=$(COSIGN) $(GO) test -count=1 ./...
	COSIGN=$(COSIGN) $(GO) test -count=1 -tags e2e -timeout 80m -parallel 64 -p 1 -v ./test/... 2>&1 | ./hack/e2e-summary.sh
	$(MAKE) test-packer

.PHONY: test-e2e-quick
test-e2e-quick: ## end-to-end tests without booting the roles to their services
	IMGFORGE_E2E_BOOT=0 $(GO) test -count=1 -tags e2e -timeout 80m -parallel 64 -p 1 -v ./test/... 2>&1 | ./hack/e2e-summary.sh

.PHONY: test-short
test-short: ## unit tests only (no mmdebstrap, no mirror): under a minute
	$(GO) test -short ./...
	cd $(PLUGIN) && $(GO) test -short ./...

.PHONY: test-packer
test-packer: packer-tools ## the Packer plugin: unit tests, generated-file drift, plugin-check, real `packer build` of lb
	cd $(PLUGIN) && $(GO) test -count=1 -timeout 30m ./...
	./hack/packer-check.sh $(TOOLS_DIR)
	cd $(PLUGIN) && PACKER_ACC=1 PACKER=$(PACKER) $(GO) test -count=1 -timeout 60m -v -run 'TestAcc' . 2>&1 | ../hack/e2e-summary.sh

.PHONY: syft-tool
syft-tool: ## build syft into the tools dir (once; a few minutes): the SBOM tests read our SBOMs with it
	./hack/go-tool.sh $(TOOLS_DIR) syft 1.57.1 github.com/anchore/syft/cmd/syft main.version=1.57.1

.PHONY: cosign-tool
cosign-tool: ## build cosign into the tools dir (once; a few minutes): the signing tests verify our signatures with it
	./hack/go-tool.sh $(TOOLS_DIR) cosign 2.6.5 github.com/sigstore/cosign/v2/cmd/cosign sigs.k8s.io/release-utils/version.gitVersion=v2.6.5

.PHONY: packer-tools
packer-tools: ## build packer v1.11.2 and packer-sdc into the tools dir (once; minutes)
	./hack/packer-tools.sh $(TOOLS_DIR)

.PHONY: packer-generate
packer-generate: ## regenerate the Packer plugin's HCL2 spec and docs (packer-sdc)
	./hack/packer-tools.sh $(TOOLS_DIR) packer-sdc
	cd $(PLUGIN) && PATH="$(TOOLS_DIR)/bin:$$PATH" $(GO) generate ./...
	cd $(PLUGIN) && rm -rf .docs && $(PACKER_SDC) renderdocs -src docs -partials docs-partials -dst .docs
	cd $(PLUGIN) && mkdir -p .web-docs/components/builder/imgforge && \
	  cp .docs/README.md .web-docs/README.md && \
	  awk 'NR==1 && /^---$$/ {fm=1; next} fm && /^---$$/ {fm=0; next} !fm' .docs/builders/imgforge.mdx \
	    > .web-docs/components/builder/imgforge/README.md && rm -rf .docs

.PHONY: man
man: ## man pages of every command (cobra/doc) into out/man; man -l out/man/imgforge-build.1
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 0)} $(GO) run ./cmd/imgforge man --dir out/man

.PHONY: plugin
plugin: ## build bin/packer-plugin-imgforge
	cd $(PLUGIN) && $(GO) build -o ../bin/packer-plugin-imgforge .

.PHONY: plugin-release
plugin-release: ## the Packer plugin's release files in dist/ (per platform a zip, and SHA256SUMS), as packer plugins install fetches them from a GitHub release
	rm -rf dist && mkdir -p dist/.bin
	set -e; for arch in $(PLUGIN_ARCHES); do \
	  (cd $(PLUGIN) && CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w -buildid=' -o ../dist/.bin/linux_$$arch .); \
	done
	cd $(PLUGIN) && $(GO) build -o ../dist/.bin/host .
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || echo 315532800)} \
	  $(GO) run ./hack/pluginrelease -name imgforge -describe dist/.bin/host -out dist $(foreach a,$(PLUGIN_ARCHES),linux_$(a)=dist/.bin/linux_$(a))
	rm -rf dist/.bin

.PHONY: fuzz
fuzz: ## run every fuzz test for 30s each
	$(GO) test -run '^$$' -fuzz FuzzParseRole -fuzztime 30s ./pkg/spec
	$(GO) test -run '^$$' -fuzz FuzzParseImage -fuzztime 30s ./pkg/spec
	$(GO) test -run '^$$' -fuzz FuzzParseStatus -fuzztime 30s ./pkg/dpkg
	$(GO) test -run '^$$' -fuzz FuzzNormalize -fuzztime 30s ./pkg/layer
	$(GO) test -run '^$$' -fuzz FuzzDetectMirrors -fuzztime 30s ./pkg/plan
	$(GO) test -run '^$$' -fuzz FuzzNoInjection -fuzztime 30s ./pkg/agent/render
	$(GO) test -run '^$$' -fuzz FuzzPrometheusAgentCheck -fuzztime 30s ./pkg/agent/render
	$(GO) test -run '^$$' -fuzz 'FuzzParse$$' -fuzztime 30s ./pkg/agent/config
	$(GO) test -run '^$$' -fuzz FuzzParseInstanceData -fuzztime 30s ./pkg/agent/config
	$(GO) test -run '^$$' -fuzz FuzzParseMeta -fuzztime 30s ./pkg/agent/discovery
	$(GO) test -run '^$$' -fuzz FuzzDNSAnswer -fuzztime 30s ./pkg/agent/discovery
	$(GO) test -run '^$$' -fuzz FuzzParseCluster -fuzztime 30s ./pkg/seed
	$(GO) test -run '^$$' -fuzz FuzzParseMachines -fuzztime 30s ./pkg/serve
	$(GO) test -run '^$$' -fuzz FuzzParseSums -fuzztime 30s ./pkg/imagemeta

.PHONY: bench
bench: ## benchmarks: lb against bare mmdebstrap, every role cold, warm and booted, lb netboot, gossip clusters in-process (about 30 minutes)
	$(GO) test -count=1 -tags e2e -run '^$$' -bench . -benchtime 1x -timeout 90m ./test/e2e
	$(GO) test -count=1 -run '^$$' -bench GossipConvergence -benchtime 3x -timeout 30m ./pkg/agent/discovery

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint, with the e2e build tag; the Packer plugin too
	$(GOLANGCI_LINT) run ./...
	cd $(PLUGIN) && $(GOLANGCI_LINT) run --config ../.golangci.yml ./...

$(GOLANGCI_LINT):
	GOBIN=$(TOOLS_DIR)/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: golden
golden: ## rewrite the golden files after reviewing a change
	$(GO) test ./pkg/plan ./pkg/sbom ./pkg/agent/render ./pkg/seed -update
	$(GO) test ./pkg/agent/discovery -run 'TestFuzz.*Corpus' -update

.PHONY: clean
clean: ## remove build outputs (not the cache)
	rm -rf bin out dist

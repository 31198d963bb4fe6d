# The AWS CDK app (infra/). `make synth` needs no Docker and no AWS credentials.
#   make synth                 # dev environment (cdk.json context rtai.environments.dev)
#   make synth CDK_ENV=prod
#   make cdk ARGS="deploy --all -c env=dev"   # the pinned CLI with the same setup

CDK_ENV ?= dev
NODE_BIN := $(CURDIR)/node_modules/.bin
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json 2>/dev/null | sha1sum | cut -c1-12)
# The pinned CLI (package-lock.json) under the pinned, supported Node from npm (package "node");
# no telemetry, notices or metadata-service probes, so it runs offline from AWS.
CDK := PATH="$(NODE_BIN):$$PATH" CDK_DISABLE_CLI_TELEMETRY=true AWS_EC2_METADATA_DISABLED=true \
	$(NODE_BIN)/cdk --no-notices --app "$(PY) -m infra.app"

.PHONY: cdk-install cdk

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-* && touch $@

cdk-install: $(NODE_STAMP)

synth: $(STAMP) $(NODE_STAMP)
	@start=$$(date +%s); \
	$(CDK) synth --quiet -c env=$(CDK_ENV) && \
	echo "cdk synth ($(CDK_ENV)): $$(($$(date +%s) - start))s, templates in cdk.out/"

cdk: $(STAMP) $(NODE_STAMP)
	$(CDK) $(ARGS)

# npm clients the tests drive (tests/node: the official `openai` SDK and the AI SDK's `ai`),
# pinned by tests/node/package-lock.json, run under the pinned Node 24 of the root
# package.json (node_modules/.bin/node; Debian's Node 20 is too old for them).
NODE_CLIENTS_STAMP := tests/node/node_modules/.installed-$(shell cat tests/node/package.json tests/node/package-lock.json 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: node-clients

$(NODE_CLIENTS_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	@rm -f tests/node/node_modules/.installed-* && touch $@

node-clients: $(NODE_STAMP) $(NODE_CLIENTS_STAMP)

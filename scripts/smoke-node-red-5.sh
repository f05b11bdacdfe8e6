#!/usr/bin/env bash
# Smoke test on Node-RED 5 with Node 22 (run by .ci/run, not by npm install).
#
# In a throwaway folder: npm installs node@22 (a Node 22 binary in node_modules/.bin) and
# node-red@5, packs this package (npm pack) and installs the tarball into a fresh userDir the way
# the palette manager would, starts Node-RED 5 on 127.0.0.1 and a free port, then fails unless
# every node set in package.json's node-red section is loaded with its types (GET /nodes), the
# examples are offered, the log shows no error about this module, and the SenML example flow
# decodes the RFC 8428 example. Node-RED 5 loads node files with import(); dist/ is CommonJS
# without "type": "module", and this is what proves that works.
#
# Set CONFLUX_SKIP_BUILD=1 when dist/ is already built (as .ci/run does after npm test).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_RED_RANGE=${CONFLUX_SMOKE_NODE_RED:-5}
NODE_RANGE=${CONFLUX_SMOKE_NODE:-22}
START_TIMEOUT=${CONFLUX_SMOKE_START_TIMEOUT:-90}

say() { printf 'smoke-node-red-5: %s\n' "$*"; }
fail() {
  printf 'smoke-node-red-5: FAILED: %s\n' "$*" >&2
  if [ -n "${LOG:-}" ] && [ -f "$LOG" ]; then
    printf -- '--- last 60 lines of the Node-RED log ---\n' >&2
    tail -n 60 "$LOG" >&2 || true
  fi
  exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/conflux-nr5.XXXXXX")
NR_PID=
LOG=
cleanup() {
  local code=$?
  if [ -n "$NR_PID" ] && kill -0 "$NR_PID" 2>/dev/null; then
    kill -TERM "$NR_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$NR_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$NR_PID" 2>/dev/null || true
    wait "$NR_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$ROOT"
PKG_NAME=$(node -p "require('./package.json').name")
NODE_SETS=$(node -p "Object.keys((require('./package.json')['node-red']||{}).nodes||{}).join(' ')")
[ -n "$NODE_SETS" ] || fail "package.json's node-red.nodes is empty: there is no node to check"
say "package $PKG_NAME, node sets: $NODE_SETS"

if [ "${CONFLUX_SKIP_BUILD:-}" != 1 ]; then
  say "building"
  node scripts/build.js || fail "the build (node scripts/build.js) failed"
fi
for set in $NODE_SETS; do
  file=$(node -p "require('./package.json')['node-red'].nodes['$set']")
  [ -f "$file" ] || fail "node set $set: $file does not exist (build first?)"
done

say "packing"
TARBALL=$(npm pack --silent --pack-destination "$WORK" 2>/dev/null | tail -n 1)
[ -f "$WORK/$TARBALL" ] || fail "npm pack produced no tarball"
say "packed $TARBALL ($(du -h "$WORK/$TARBALL" | cut -f1))"

say "installing node@$NODE_RANGE and node-red@$NODE_RED_RANGE (this downloads a Node binary, about 185 MB unpacked)"
mkdir -p "$WORK/runtime"
cat > "$WORK/runtime/package.json" <<JSON
{ "name": "conflux-smoke-runtime", "private": true, "allowScripts": { "node": true } }
JSON
(cd "$WORK/runtime" && npm install --prefer-offline --no-audit --no-fund --loglevel=error "node@$NODE_RANGE" "node-red@$NODE_RED_RANGE" > "$WORK/npm-runtime.log" 2>&1) ||
  { cat "$WORK/npm-runtime.log" >&2; fail "npm install node@$NODE_RANGE node-red@$NODE_RED_RANGE failed"; }
NODE_BIN="$WORK/runtime/node_modules/.bin/node"
[ -x "$NODE_BIN" ] || fail "node@$NODE_RANGE installed no binary at node_modules/.bin/node (its preinstall script did not run?)"
NODE_VERSION=$("$NODE_BIN" --version) || fail "the installed node binary does not run"
case "$NODE_VERSION" in v"$NODE_RANGE".*) ;; *) fail "expected Node $NODE_RANGE, the binary says $NODE_VERSION" ;; esac
NR_VERSION=$(node -p "require('$WORK/runtime/node_modules/node-red/package.json').version")
case "$NR_VERSION" in "$NODE_RED_RANGE".*) ;; *) fail "expected node-red $NODE_RED_RANGE, got $NR_VERSION" ;; esac
say "Node $NODE_VERSION, node-red $NR_VERSION"

say "installing $TARBALL into a fresh userDir"
USER_DIR="$WORK/user"
mkdir -p "$USER_DIR"
cat > "$USER_DIR/package.json" <<JSON
{ "name": "node-red-project", "description": "Conflux smoke test", "version": "0.0.1", "private": true }
JSON
(cd "$USER_DIR" && PATH="$(dirname "$NODE_BIN"):$PATH" npm install --prefer-offline --no-audit --no-fund --loglevel=error --omit=dev "$WORK/$TARBALL" > "$WORK/npm-user.log" 2>&1) ||
  { cat "$WORK/npm-user.log" >&2; fail "installing the packed tarball failed"; }

PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cat > "$WORK/settings.js" <<JS
module.exports = {
  uiHost: '127.0.0.1',
  uiPort: $PORT,
  flowFile: 'flows.json',
  credentialSecret: false,
  telemetry: { enabled: false, updateNotification: false },
  logging: { console: { level: 'info', metrics: false, audit: false } },
  editorTheme: { tours: false },
};
JS

LOG="$WORK/node-red.log"
BASE="http://127.0.0.1:$PORT"
say "starting Node-RED $NR_VERSION on $BASE"
(cd "$WORK" && exec "$NODE_BIN" "$WORK/runtime/node_modules/node-red/red.js" --settings "$WORK/settings.js" --userDir "$USER_DIR" > "$LOG" 2>&1) &
NR_PID=$!

deadline=$((SECONDS + START_TIMEOUT))
code=000
while [ $SECONDS -lt $deadline ]; do
  kill -0 "$NR_PID" 2>/dev/null || fail "Node-RED exited during start-up"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/" || true)
  [ "$code" = 200 ] && grep -q 'Started flows' "$LOG" && break
  sleep 0.5
done
[ "$code" = 200 ] || fail "GET / did not answer 200 within ${START_TIMEOUT}s (last: $code)"
say "Node-RED answered GET / with 200"

curl -sf --max-time 10 -H 'Accept: application/json' "$BASE/nodes" > "$WORK/nodes.json" || fail "GET /nodes failed"
curl -sf --max-time 10 "$BASE/library/examples/flows/" > "$WORK/examples.json" || fail "GET /library/examples/flows/ failed"
node - "$WORK/nodes.json" "$WORK/examples.json" "$PKG_NAME" $NODE_SETS <<'JS' || fail "not every node set of $PKG_NAME registered on Node-RED $NR_VERSION (see above)"
const fs = require('fs');
const [nodesFile, examplesFile, pkgName, ...sets] = process.argv.slice(2);
const list = JSON.parse(fs.readFileSync(nodesFile, 'utf8'));
let ok = true;
for (const set of sets) {
  const entry = list.find((s) => s.module === pkgName && s.name === set);
  if (!entry) { console.error(`  ${set}: not listed by GET /nodes`); ok = false; continue; }
  if (entry.err) { console.error(`  ${set}: failed to load: ${entry.err}`); ok = false; continue; }
  if (!entry.enabled) { console.error(`  ${set}: disabled`); ok = false; continue; }
  if (!entry.types || entry.types.length === 0) { console.error(`  ${set}: registered no node type`); ok = false; continue; }
  console.log(`  ${set}: ${entry.types.join(', ')}`);
}
const examples = JSON.parse(fs.readFileSync(examplesFile, 'utf8'));
if (!examples.includes(pkgName)) { console.error(`  examples: ${pkgName} is not offered under Import > Examples (${JSON.stringify(examples)})`); ok = false; }
else console.log('  examples: offered under Import > Examples');
process.exit(ok ? 0 : 1);
JS

if grep -n -i -E 'Failed to register|\[(error|warn)\].*(conflux|'"${PKG_NAME//\//\\/}"')' "$LOG" > "$WORK/errors.txt"; then
  cat "$WORK/errors.txt" >&2
  fail "the Node-RED log reports errors while loading $PKG_NAME"
fi
say "the log shows no error about $PKG_NAME"

# End to end: deploy the SenML example with its debug node printing to the log, press the inject.
if node -e "process.exit(JSON.parse(require('fs').readFileSync('$WORK/nodes.json','utf8')).some(s => s.types.includes('conflux-senml')) ? 0 : 1)"; then
  node - "$ROOT/flows/senml-basics.json" > "$WORK/deploy.json" <<'JS'
const flow = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
for (const n of flow) if (n.type === 'debug') Object.assign(n, { console: true, complete: 'payload' });
process.stdout.write(JSON.stringify(flow));
JS
  INJECT_ID=$(node -p "JSON.parse(require('fs').readFileSync('$WORK/deploy.json','utf8')).find(n => n.type === 'inject').id")
  curl -sf --max-time 10 -X POST -H 'Content-Type: application/json' -H 'Node-RED-Deployment-Type: full' \
    --data-binary "@$WORK/deploy.json" "$BASE/flows" > /dev/null || fail "deploying flows/senml-basics.json failed"
  sleep 1
  curl -sf --max-time 10 -X POST "$BASE/inject/$INJECT_ID" > /dev/null || fail "pressing the inject of flows/senml-basics.json failed"
  for _ in $(seq 1 40); do grep -q 'urn:dev:ow:10e2073a01080063' "$LOG" && break; sleep 0.25; done
  grep -q 'urn:dev:ow:10e2073a01080063' "$LOG" || fail "flows/senml-basics.json: the debug node printed no decoded record"
  if grep -n -E '\[(error|warn)\] \[(conflux-|debug)' "$LOG" > "$WORK/errors.txt"; then
    cat "$WORK/errors.txt" >&2
    fail "flows/senml-basics.json reported an error on Node-RED $NR_VERSION"
  fi
  say "flows/senml-basics.json decodes the RFC 8428 example on Node-RED $NR_VERSION"
fi

# Device telemetry as application/json with Node-RED's default roots: the admin app at / parses
# the JSON body before conflux-http-in sees it (docs/operations.md), and the reading must still be
# taken, and answered 202 only once the time-series node has stored it.
if node -e "process.exit(JSON.parse(require('fs').readFileSync('$WORK/nodes.json','utf8')).some(s => s.types.includes('conflux-http-in')) ? 0 : 1)"; then
  cat > "$WORK/devices.json" <<'JSON'
[
  { "id": "smoke-tab", "type": "tab", "label": "devices" },
  { "id": "smoke-db", "type": "conflux-postgres", "url": "" },
  { "id": "smoke-gw", "type": "conflux-gateway", "database": "smoke-db", "demoDevice": true },
  { "id": "smoke-http", "type": "conflux-http-in", "z": "smoke-tab", "gateway": "smoke-gw", "basePath": "/devices", "fiware": false, "wires": [["smoke-ts"]] },
  { "id": "smoke-ts", "type": "conflux-time-series", "z": "smoke-tab", "engine": "sql", "database": "smoke-db", "wires": [[], []] }
]
JSON
  curl -sf --max-time 10 -X POST -H 'Content-Type: application/json' -H 'Node-RED-Deployment-Type: full' \
    --data-binary "@$WORK/devices.json" "$BASE/flows" > /dev/null || fail "deploying the device flow failed"
  KEY=
  for _ in $(seq 1 240); do
    KEY=$(sed -n 's/.*its key, shown only this once: \([^ ]*\).*/\1/p' "$LOG" | tail -n 1)
    [ -n "$KEY" ] && break
    sleep 0.25
  done
  [ -n "$KEY" ] || fail "the gateway logged no demo device key"
  NOW=$(date +%s)
  STATUS=$(curl -s -o "$WORK/telemetry.json" -w '%{http_code}' --max-time 30 -X POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer demo-0001:$KEY" --data "[{\"n\":\"temperature\",\"u\":\"Cel\",\"v\":21.5,\"t\":$NOW}]" \
    "$BASE/devices/demo-0001/telemetry" || true)
  [ "$STATUS" = 202 ] || fail "application/json telemetry with the default roots: expected 202, got $STATUS: $(cat "$WORK/telemetry.json" 2>/dev/null)"
  say "application/json telemetry under the default roots: 202 once stored"
fi

say "PASSED: $PKG_NAME on Node-RED $NR_VERSION with Node $NODE_VERSION"

/**
 * A Node-RED runtime in a child process, for crash tests: `node red-runtime.js FLOW_FILE` starts
 * Node-RED (as settings.ts does: RED.init, RED.start) with this package's nodes and the flow in
 * FLOW_FILE (and the credentials in FLOW_FILE's `_cred.json` sibling, if any), logs at warn to stdout, and prints `flows started` once every node of the flow exists.
 * The test kills it (SIGKILL) when it likes; a throwaway userDir is left to the OS's tmp cleaner.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

const packageRoot = path.resolve(__dirname, '..', '..', '..');

async function main(): Promise<void> {
  const flowFile = process.argv[2];
  if (!flowFile) throw new Error('usage: red-runtime.js FLOW_FILE');
  const flow = JSON.parse(fs.readFileSync(flowFile, 'utf8')) as Array<{ id: string; type: string }>;
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'conflux-red-child-'));
  fs.copyFileSync(flowFile, path.join(userDir, 'flows.json'));
  // Credentials beside the flow (FLOW_FILE with _cred before .json), plain JSON: credentialSecret is off.
  const credFile = flowFile.replace(/\.json$/, '_cred.json');
  if (fs.existsSync(credFile)) fs.copyFileSync(credFile, path.join(userDir, 'flows_cred.json'));
  const RED = require('node-red');
  const server = http.createServer();
  RED.init(server, {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    nodesDir: [packageRoot],
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    logging: { console: { level: 'warn', metrics: false, audit: false } },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await RED.start();
  const ids = flow.filter((n) => n.type !== 'tab' && n.type !== 'group').map((n) => n.id); // groups are no runtime nodes
  const deadline = Date.now() + 60_000;
  while (!ids.every((id) => RED.nodes.getNode(id))) {
    if (Date.now() > deadline) throw new Error('the flows did not start within 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log('flows started');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

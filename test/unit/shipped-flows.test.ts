/**
 * The flows under flows/ (offered under Import > Examples) as files: each explains itself with
 * comments and groups, names every server through a CONFLUX_* variable (or leaves it empty for
 * the embedded default), uses only Conflux and core node types, and its groups hold what they
 * say. Together they use every Conflux node type (the Flow Library's N02 check).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';

type FlowNode = Record<string, unknown> & { id: string; type: string; z?: string; g?: string; name?: string };

const root = path.resolve(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
const CONFLUX_TYPES = new Set(Object.keys(pkg['node-red'].nodes));
const CORE_TYPES = new Set([
  'tab',
  'group',
  'comment',
  'inject',
  'debug',
  'change',
  'function',
  'catch',
  'status',
  'delay',
  'http in',
  'http response',
  'switch',
  'link in',
  'link out',
  'tls-config',
]);
const SIX = [
  'default.json',
  'seed-000-integration-api.json',
  'seed-001-socket-concentrator.json',
  'seed-002-third-party-connections.json',
  'seed-003-federation-proxy.json',
  'seed-004-cloud-logger.json',
];
/** The fields that name a server, per node type: `${CONFLUX_*}` or empty in a shipped flow. */
const SERVER_FIELDS: Record<string, string[]> = {
  'conflux-postgres': ['url', 'host'],
  'conflux-redis': ['url', 'sentinels', 'cluster'],
  'conflux-elasticsearch': ['nodes'],
  'conflux-amqp': ['urls'],
  'conflux-xmpp': ['jid', 'host', 'port'],
  'conflux-ftp': ['host', 'port'],
  'conflux-gateway': ['centralUrl'],
  'conflux-mqtt-in': ['url'],
  'conflux-http-pull': ['url', 'tokenUrl'],
};

const files = fs.readdirSync(path.join(root, 'flows')).filter((f) => f.endsWith('.json'));
const read = (file: string): FlowNode[] => JSON.parse(fs.readFileSync(path.join(root, 'flows', file), 'utf8')) as FlowNode[];

describe('the shipped flows (flows/*.json)', () => {
  it('has the getting-started flow and one flow per seed system', () => {
    for (const file of SIX) assert.ok(files.includes(file), `flows/${file} is missing`);
  });

  it('uses every Conflux node type in at least one flow', () => {
    const used = new Set(files.flatMap((f) => read(f).map((n) => n.type)));
    assert.deepEqual(
      [...CONFLUX_TYPES].filter((t) => !used.has(t)),
      [],
    );
  });

  for (const file of files) {
    describe(file, () => {
      const flow = read(file);
      const tabs = flow.filter((n) => n.type === 'tab');
      const groups = new Map(
        flow.filter((n) => n.type === 'group').map((g) => [g.id, g as FlowNode & { nodes: string[]; x: number; y: number; w: number; h: number }]),
      );

      it('is one tab that says what it shows, with comments and groups', () => {
        assert.equal(tabs.length, 1);
        assert.ok(String(tabs[0].info ?? '').length > 40, 'the tab has an info text');
        assert.ok(
          flow.some((n) => n.type === 'comment' && n.z === tabs[0].id),
          'a comment node',
        );
        assert.ok(groups.size >= 1, 'a group');
        if (SIX.includes(file)) {
          assert.ok(groups.size >= 3, 'the stages in groups');
          for (const g of groups.values())
            assert.ok(
              g.nodes.some((id) => flow.find((n) => n.id === id)?.type === 'comment'),
              `group "${String(g.name)}" explains itself with a comment`,
            );
        }
      });

      it('has only Conflux and core node types, with unique ids', () => {
        for (const n of flow) assert.ok(CONFLUX_TYPES.has(n.type) || CORE_TYPES.has(n.type), `${n.type} (${n.id}) is neither a Conflux nor a core type`);
        assert.equal(new Set(flow.map((n) => n.id)).size, flow.length);
      });

      it('keeps every node in its tab, every g in an existing group that lists it, and each group around its nodes', () => {
        const tab = tabs[0].id;
        for (const n of flow) if (n.type !== 'tab' && n.z !== undefined) assert.equal(n.z, tab, `${n.type} ${n.id}`);
        for (const n of flow) {
          if (n.g === undefined) continue;
          const g = groups.get(n.g);
          assert.ok(g, `${n.type} ${n.id} names the group ${n.g}, which does not exist`);
          assert.ok(g.nodes.includes(n.id), `group ${g.id} does not list ${n.id}`);
        }
        for (const g of groups.values()) {
          assert.ok(
            [g.x, g.y, g.w, g.h].every((v) => typeof v === 'number'),
            `group ${g.id} has x, y, w, h`,
          );
          for (const id of g.nodes) {
            const n = flow.find((m) => m.id === id);
            assert.ok(n, `group ${g.id} lists ${id}, which does not exist`);
            assert.equal(n.g, g.id, `${id} is listed by group ${g.id} but says g=${String(n.g)}`);
            const [x, y] = [n.x as number, n.y as number];
            assert.ok(x > g.x && x < g.x + g.w && y > g.y && y < g.y + g.h, `${n.type} ${id} (${x}, ${y}) lies outside its group "${String(g.name)}"`);
          }
        }
      });

      it('wires only to nodes that exist, and config nodes stay out of tabs', () => {
        const ids = new Set(flow.map((n) => n.id));
        for (const n of flow)
          for (const out of (n.wires as string[][] | undefined) ?? []) for (const id of out) assert.ok(ids.has(id), `${n.id} wires to ${id}`);
        for (const n of flow)
          if (/^conflux-(postgres|redis|elasticsearch|amqp|xmpp|ftp|gateway|api|webhooks)$/.test(n.type)) assert.equal(n.z, undefined, `${n.type} ${n.id}`);
      });

      it('names every server through a CONFLUX_* variable, or leaves it empty for the embedded default', () => {
        for (const n of flow)
          for (const field of SERVER_FIELDS[n.type] ?? []) {
            const value = String(n[field] ?? '');
            assert.ok(value === '' || /^\$\{CONFLUX_[A-Z0-9_]+\}(\/[\w./-]*)?$/.test(value), `${n.type} ${n.id} ${field} = ${value}`);
          }
      });
    });
  }
});

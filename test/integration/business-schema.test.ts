/**
 * Each business entity is described once (nodes/core/stores/business-entities.ts); this checks
 * every description against the tables the migrations make, on PostgreSQL 15 and PGlite, so a
 * migration that adds, drops, retypes or changes the nullability of a column, or moves a key,
 * without the description following, fails here.
 */
import * as assert from 'node:assert/strict';
import type { SqlClient } from '../../nodes/core/db/sql';
import { migrate } from '../../nodes/core/db/migrate';
import { BUSINESS_ENTITIES, ENTITIES, SQL_TYPE, type Entity } from '../../nodes/core/stores/business-entities';
import { ENGINES, OPEN_TIMEOUT_MS } from '../support/engines';

/** information_schema's udt_name of each SQL type the descriptions use. */
const UDT: Record<string, string> = {
  text: 'text',
  integer: 'int4',
  smallint: 'int2',
  bigint: 'int8',
  boolean: 'bool',
  jsonb: 'jsonb',
  'text[]': '_text',
  timestamptz: 'timestamptz',
  bytea: 'bytea',
};

interface SchemaColumn {
  column_name: string;
  udt_name: string;
  is_nullable: 'YES' | 'NO';
  column_default: string | null;
  is_identity: 'YES' | 'NO';
}

async function constraintColumns(db: SqlClient, table: string, type: 'PRIMARY KEY' | 'FOREIGN KEY'): Promise<string[][]> {
  const { rows } = await db.query<{ name: string; columns: string[] }>(
    `SELECT tc.constraint_name AS name, array_agg(k.column_name::text ORDER BY k.ordinal_position) AS columns
     FROM information_schema.table_constraints tc
     JOIN information_schema.key_column_usage k
       ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name
     WHERE tc.table_schema = current_schema() AND tc.table_name = $1 AND tc.constraint_type = $2
     GROUP BY tc.constraint_name ORDER BY tc.constraint_name`,
    [table, type],
  );
  return rows.map((r) => r.columns);
}

/** Every way the table differs from spec, one line each; empty when they agree. */
async function drift(db: SqlClient, spec: Entity): Promise<string[]> {
  const out: string[] = [];
  const { rows } = await db.query<SchemaColumn>(
    `SELECT column_name, udt_name, is_nullable, column_default, is_identity
     FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`,
    [spec.table],
  );
  if (rows.length === 0) return [`${spec.table}: no such table`];
  const actual = new Map(rows.map((r) => [r.column_name, r]));
  const described = Object.entries(spec.columns).filter(([, c]) => !c.virtual);

  const scope = actual.get(spec.scope);
  if (!scope || scope.udt_name !== 'text' || scope.is_nullable !== 'NO') out.push(`${spec.table}.${spec.scope}: the tenant column is not text NOT NULL`);
  for (const name of actual.keys()) {
    if (name !== spec.scope && !Object.hasOwn(spec.columns, name)) out.push(`${spec.table}.${name}: in the table, not in the description`);
  }
  for (const [name, col] of described) {
    const a = actual.get(name);
    if (!a) {
      out.push(`${spec.table}.${name}: described, not in the table`);
      continue;
    }
    const want = UDT[SQL_TYPE[col.type]];
    if (a.udt_name !== want) out.push(`${spec.table}.${name}: type ${a.udt_name}, described ${want}`);
    if ((a.is_nullable === 'YES') !== Boolean(col.nullable)) {
      out.push(`${spec.table}.${name}: ${a.is_nullable === 'YES' ? 'nullable' : 'NOT NULL'}, described ${col.nullable ? 'nullable' : 'NOT NULL'}`);
    }
    // A NOT NULL column a create may leave out needs a default, or every such create fails.
    const defaulted = a.column_default !== null || a.is_identity === 'YES';
    if (spec.creatable && a.is_nullable === 'NO' && !col.required && !col.filled && !defaulted)
      out.push(`${spec.table}.${name}: NOT NULL without a default, yet optional on create`);
    if (col.required && defaulted) out.push(`${spec.table}.${name}: has a default, yet described as required`);
  }
  const primary = await constraintColumns(db, spec.table, 'PRIMARY KEY');
  const wantPrimary = spec.key === 'id' ? [spec.key] : [spec.scope, spec.key];
  if (JSON.stringify(primary) !== JSON.stringify([wantPrimary])) {
    out.push(`${spec.table}: primary key ${JSON.stringify(primary)}, described ${JSON.stringify(wantPrimary)}`);
  }
  // Every id column but the row's own points at a row of the same tenant: (tenant_id, ...) that holds it.
  const foreign = await constraintColumns(db, spec.table, 'FOREIGN KEY');
  for (const [name, col] of described) {
    if (col.type !== 'id' || name === spec.key) continue;
    if (!foreign.some((cols) => cols[0] === 'tenant_id' && cols.includes(name))) {
      out.push(`${spec.table}.${name}: in no foreign key (tenant_id, ...)`);
    }
  }
  return out;
}

for (const engine of ENGINES) {
  describe(`business entities against the migrated schema (${engine.name})`, function () {
    this.timeout(OPEN_TIMEOUT_MS);
    let db: SqlClient;

    before(async () => {
      db = await engine.open();
      await migrate(db);
    });
    after(async () => db?.close());

    for (const name of BUSINESS_ENTITIES) {
      it(`${name}: the description matches the table`, async () => {
        assert.deepEqual(await drift(db, ENTITIES[name]), []);
      });
    }

    it('a migration that drifts from a description is caught', async () => {
      const other = await engine.open();
      try {
        await migrate(other);
        for (const change of [
          'ALTER TABLE devices ADD COLUMN firmware text',
          'ALTER TABLE devices ALTER COLUMN model SET NOT NULL',
          'ALTER TABLE channels ALTER COLUMN number TYPE bigint',
          'ALTER TABLE ftp_targets ALTER COLUMN port DROP DEFAULT',
          'ALTER TABLE api_keys DROP CONSTRAINT api_keys_tenant_id_user_id_fkey',
        ]) {
          await other.query(change);
        }
        assert.deepEqual((await drift(other, ENTITIES.devices)).sort(), [
          'devices.firmware: in the table, not in the description',
          'devices.model: NOT NULL without a default, yet optional on create',
          'devices.model: NOT NULL, described nullable',
        ]);
        assert.deepEqual(await drift(other, ENTITIES.channels), ['channels.number: type int8, described int4']);
        assert.deepEqual(await drift(other, ENTITIES.ftp_targets), ['ftp_targets.port: NOT NULL without a default, yet optional on create']);
        assert.deepEqual(await drift(other, ENTITIES.api_keys), ['api_keys.user_id: in no foreign key (tenant_id, ...)']);
      } finally {
        await other.close();
      }
    });
  });
}

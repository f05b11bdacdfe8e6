/**
 * Dead letters (migration 001's dead_letters: messages that used up their attempts, with the box
 * and queue they came from), as the operator dashboard lists them and acts on them. Retry moves
 * one back into its box and queue in one transaction, with its attempts at zero, so the queue's
 * drainer picks it up on its next claim; drop deletes it. Both are tenant-scoped and idempotent:
 * a dead letter already retried or dropped (or another tenant's) is 'absent', and nothing
 * changes. Framework-free.
 */
import type { SqlClient } from '../db/sql';
import { connectorOf } from './mailboxes';
import { OpsInputError } from './readings';

export interface DeadLetterRow {
  id: string;
  box: 'inbox' | 'outbox';
  queue: string;
  connector: string;
  messageId: string;
  attempts: number;
  lastError: string;
  /** ISO 8601 */
  failedAt: string;
}

export const MAX_DEAD_LETTERS = 500;

/** The tenant's dead letters, newest first (at most MAX_DEAD_LETTERS). */
export async function listDeadLetters(db: SqlClient, tenant: string): Promise<DeadLetterRow[]> {
  const { rows } = await db.query<{
    id: string;
    box: 'inbox' | 'outbox';
    queue: string;
    message_id: string;
    attempts: number;
    last_error: string | null;
    failed_at: Date;
  }>(
    `SELECT id::text AS id, box, queue, message_id, attempts, last_error, failed_at FROM dead_letters
     WHERE tenant_id = $1 ORDER BY failed_at DESC, id DESC LIMIT $2`,
    [tenant, MAX_DEAD_LETTERS],
  );
  return rows.map((r) => ({
    id: r.id,
    box: r.box,
    queue: r.queue,
    connector: connectorOf(r.queue),
    messageId: r.message_id,
    attempts: Number(r.attempts),
    lastError: r.last_error ?? '',
    failedAt: new Date(r.failed_at).toISOString(),
  }));
}

/** The id of a "retry" or "drop" request: {id} or the id itself, a positive integer. */
export function parseDeadLetterId(payload: unknown): string {
  const raw = payload !== null && typeof payload === 'object' && !Array.isArray(payload) ? (payload as { id?: unknown }).id : payload;
  const text = typeof raw === 'number' || typeof raw === 'bigint' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
  if (!/^[1-9]\d{0,18}$/.test(text)) throw new OpsInputError(`payload.id must be a dead letter's id (a positive integer), got ${JSON.stringify(raw)}`);
  return text;
}

export type DeadLetterOutcome = 'retried' | 'dropped' | 'absent';

/**
 * Moves the dead letter back into its box and queue, claimable at once with no attempts counted.
 * When the box already holds a message of that id (sent again meanwhile), that one stands and the
 * dead letter only goes.
 */
export async function retryDeadLetter(db: SqlClient, tenant: string, id: string): Promise<DeadLetterOutcome> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ box: string }>('SELECT box FROM dead_letters WHERE id = $1 AND tenant_id = $2 FOR UPDATE', [id, tenant]);
    if (rows.length === 0) return 'absent';
    const box = rows[0].box === 'inbox' ? 'inbox' : 'outbox'; // the CHECK of dead_letters allows only these two
    await tx.query(
      `INSERT INTO ${box} (tenant_id, queue, message_id, payload, headers, attempts, last_error, created_at)
       SELECT tenant_id, queue, message_id, payload, headers, 0, last_error, created_at FROM dead_letters WHERE id = $1
       ON CONFLICT (tenant_id, queue, message_id) DO NOTHING`,
      [id],
    );
    await tx.query('DELETE FROM dead_letters WHERE id = $1', [id]);
    return 'retried';
  });
}

/** Deletes the dead letter for good. */
export async function dropDeadLetter(db: SqlClient, tenant: string, id: string): Promise<DeadLetterOutcome> {
  const result = await db.query('DELETE FROM dead_letters WHERE id = $1 AND tenant_id = $2', [id, tenant]);
  return result.rowCount > 0 ? 'dropped' : 'absent';
}

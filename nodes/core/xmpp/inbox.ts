/**
 * Messages from peers into the inbox of conflux-xmpp-in, framework-free. Each received message
 * stanza is decoded, stored (batched: one transaction for what arrived together), and only then
 * answered with its XEP-0184 receipt; the drain (../webhooks/in-drain.ts) hands it to the flow
 * and deletes it when the flow has finished.
 *
 * De-duplication per sender and stanza id: the key `<sender's bare JID> <stanza id>` is kept in
 * webhook_receipts (migration 006, queue = this inbox queue) for the node's window, so a repeat —
 * the sender missed our receipt and sent again, possibly from another of its resources — is not
 * stored again, even after the first was processed and deleted; it is answered with a receipt
 * again. Several instances of one proxy (one JID, several resources, one database) all receive a
 * message sent to the bare JID; the same key makes one inbox row of it and the drain's claim
 * hands it to one flow.
 *
 * A body that cannot be decoded is answered with a receipt too (sending it again cannot mend it)
 * and reported through onInvalid.
 */
import type { SqlClient } from '../db/sql';
import { Mailbox, type ClaimedMessage } from '../mailbox/mailbox';
import { Batcher } from '../stores/batcher';
import { bareJid, type XmppConnection } from './connection';
import { classify, decodeBody, receiptStanza, type WireFormat } from './stanza';
import type { Sen1Meta } from '../codecs/sen1';
import type { ResolvedRecord } from '../model/senml';

/** What an inbox row holds. */
export interface StoredStanza {
  from: string;
  to: string;
  id: string;
  format: WireFormat;
  records: ResolvedRecord[];
  sen1?: Sen1Meta;
  receivedAt: number;
}

/** The message the flow gets (the contract with the federation). */
export interface XmppInMessage {
  payload: ResolvedRecord[];
  messageId: string;
  tenant: string;
  xmpp: { from: string; to: string; id: string; attempts: number };
  sen1?: Sen1Meta;
  source: { transport: 'xmpp'; format: WireFormat; receivedAt: number };
}

export function flowMessage(m: ClaimedMessage): XmppInMessage {
  const s = m.payload as StoredStanza;
  const msg: XmppInMessage = {
    payload: s.records,
    messageId: s.id,
    tenant: m.tenantId,
    xmpp: { from: s.from, to: s.to, id: s.id, attempts: m.attempts },
    source: { transport: 'xmpp', format: s.format, receivedAt: s.receivedAt },
  };
  if (s.sen1) msg.sen1 = s.sen1;
  return msg;
}

export interface XmppInboxOptions {
  connection: XmppConnection;
  sql: SqlClient;
  tenant: string;
  queue: string;
  onStored?(n: number): void;
  onDuplicate?(n: number): void;
  onInvalid?(from: string, id: string, body: string, err: Error): void;
  /** Storing failed (the database is down): no receipt went out, the sender sends again. */
  onError?(err: Error): void;
}

interface Entry {
  key: string;
  stored: StoredStanza;
  receipt: boolean;
}

export class XmppInbox {
  private readonly writer: Batcher<Entry>;
  private unsubscribe: (() => void) | undefined;
  stored = 0;
  duplicates = 0;

  constructor(private readonly options: XmppInboxOptions) {
    this.writer = new Batcher<Entry>({ maxBatch: 500, maxDelayMs: 2, maxPending: 20_000, write: (entries) => this.write(entries) });
  }

  start(): void {
    this.unsubscribe = this.options.connection.onStanza((stanza) => {
      const s = classify(stanza);
      if (s.kind !== 'message') return;
      const from = bareJid(s.from);
      let decoded;
      try {
        decoded = decodeBody(s.body);
      } catch (err) {
        this.options.onInvalid?.(s.from, s.id, s.body, err as Error);
        if (s.receipt) this.answer(s.from, s.id);
        return;
      }
      const stored: StoredStanza = { from: s.from, to: s.to, id: s.id, format: decoded.format, records: decoded.records, receivedAt: Date.now() };
      if (decoded.sen1) stored.sen1 = decoded.sen1;
      this.writer.add([{ key: `${from} ${s.id}`, stored, receipt: s.receipt }]).then(
        () => {
          if (s.receipt) this.answer(s.from, s.id);
        },
        (err: Error) => this.options.onError?.(err), // no receipt: the sender sends it again
      );
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.writer.close();
  }

  private answer(to: string, id: string): void {
    const c = this.options.connection;
    if (!c.xml) return;
    c.send(receiptStanza(c.xml, to, id)).catch(() => undefined); // lost receipt: the sender sends again, we answer again
  }

  private async write(entries: Entry[]): Promise<void> {
    const { tenant, queue } = this.options;
    const unique = new Map<string, Entry>();
    for (const e of entries) if (!unique.has(e.key)) unique.set(e.key, e);
    const fresh = await this.options.sql.transaction(async (tx) => {
      const { rows } = await tx.query<{ message_id: string }>(
        `INSERT INTO webhook_receipts (tenant_id, queue, message_id) SELECT $1, $2, k FROM unnest($3::text[]) AS k
         ON CONFLICT (tenant_id, queue, message_id) DO NOTHING RETURNING message_id`,
        [tenant, queue, [...unique.keys()].sort()], // one order for every instance: two instances' batches never deadlock
      );
      const news = rows.map((r) => unique.get(r.message_id)!);
      await new Mailbox(tx, 'inbox').enqueue(
        tenant,
        queue,
        news.map((e) => ({ messageId: e.key, payload: e.stored })),
      );
      return news.length;
    });
    this.stored += fresh;
    this.duplicates += entries.length - fresh;
    if (fresh > 0) this.options.onStored?.(fresh);
    if (entries.length > fresh) this.options.onDuplicate?.(entries.length - fresh);
  }
}

/** Makes the queue's rows that wait out a backoff claimable now (a msg with msg.drain === true); returns how many. */
export async function retryNow(sql: SqlClient, box: 'inbox' | 'outbox', queue: string): Promise<number> {
  const r = await sql.query(
    `UPDATE ${box === 'inbox' ? 'inbox' : 'outbox'} SET available_at = now() WHERE queue = $1 AND available_at > now() AND claimed_by IS NULL`,
    [queue],
  );
  return r.rowCount;
}

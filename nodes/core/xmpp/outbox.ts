/**
 * The outbox of conflux-xmpp-out drained onto the XMPP connection ("Fetch Outbox"),
 * framework-free. While online a Drainer claims rows (at most `capacity` out at once) and each is
 * sent as a message stanza whose id is the message id, with a XEP-0184 receipt request. An entry
 * is deleted only when the peer's receipt for that id comes back (from that peer's bare JID);
 * with no receipt within `receiptTimeoutMs` it is given back to the outbox with backoff and sent
 * again later with the same stanza id (the peer drops the repeat; dead letters after
 * maxAttempts). Offline nothing is claimed; what is out waits for its receipt or its timeout.
 *
 * Several instances (one JID, several resources, one database) drain one queue: the claim's
 * lease keeps a row with one of them at a time. A receipt deletes the row whichever instance
 * sent it (the server routes a receipt for an instance gone away to the other resources).
 *
 * Rows written while online with room are born claimed (enqueueClaimed) and sent at once: no
 * claim round trip on the hot path.
 */
import * as metrics from '../metrics/metrics';
import type { SqlClient } from '../db/sql';
import { Drainer } from '../mailbox/drainer';
import { Mailbox, type ClaimedMessage, type NackResult, type NewMessage, type RetryPolicy, type RowId } from '../mailbox/mailbox';
import { bareJid, type XmppConnection } from './connection';
import { classify, messageStanza, type OutgoingStanza } from './stanza';

export interface XmppOutboxOptions {
  connection: XmppConnection;
  sql: SqlClient;
  queue: string;
  worker: string;
  capacity: number;
  receiptTimeoutMs: number;
  pollMs: number;
  retry: RetryPolicy;
  onSent?(): void;
  onAcked?(n: number): void;
  onFailed?(messageId: string, reason: string, outcome: NackResult | undefined): void;
  /** A claim, an insert or a delete failed (the database is down). */
  onError?(err: Error): void;
}

interface Out {
  row: RowId;
  peer: string;
  timer: NodeJS.Timeout;
  /** performance.now() when sent: the delivery's duration runs to the receipt. */
  sentAt: number;
}

export class XmppOutbox {
  private readonly box: Mailbox;
  private readonly drainer: Drainer;
  /** Stanza id → what is out and waits for its receipt. */
  private readonly out = new Map<string, Out>();
  private receipts: { id: string; peer: string }[] = [];
  private receiptTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private stopped = false;
  sent = 0;
  acked = 0;
  failed = 0;

  constructor(private readonly options: XmppOutboxOptions) {
    this.box = new Mailbox(options.sql, 'outbox');
    this.drainer = new Drainer(this.box, {
      queue: options.queue,
      worker: options.worker,
      capacity: options.capacity,
      // Longer than the receipt wait: the row is given back by its timeout, not taken by another instance.
      leaseMs: options.receiptTimeoutMs + 10_000,
      pollMs: options.pollMs,
      retry: options.retry,
      deliver: (m) => this.deliver(m),
      onError: options.onError,
    });
  }

  get inFlight(): number {
    return this.out.size;
  }

  start(): void {
    const c = this.options.connection;
    this.unsubscribe.push(
      c.onStanza((stanza) => {
        const s = classify(stanza);
        if (s.kind === 'receipt') this.receipt(s.id, bareJid(s.from));
      }),
      c.onOnline((online) => (online ? this.drainer.start() : void this.drainer.stop())),
    );
    if (c.online) this.drainer.start();
  }

  /**
   * Stores the stanzas (done() may follow once this resolves); while online with room they are
   * sent at once. Returns how many were new (a repeated message id is not stored twice).
   */
  async enqueue(tenant: string, stanzas: readonly OutgoingStanza[]): Promise<number> {
    const rows: NewMessage[] = stanzas.map((s) => ({ messageId: s.id, payload: s }));
    if (!this.stopped && this.options.connection.online && this.drainer.room >= rows.length) {
      const claimed = await this.box.enqueueClaimed(tenant, this.options.queue, rows, {
        worker: this.options.worker,
        leaseMs: this.options.receiptTimeoutMs + 10_000,
      });
      this.drainer.adopt(claimed);
      return claimed.length;
    }
    const n = await this.box.enqueue(tenant, this.options.queue, rows);
    this.drainer.wake();
    return n;
  }

  /** Sends what waits now (a msg with msg.drain). */
  wake(): void {
    this.drainer.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const u of this.unsubscribe.splice(0)) u();
    for (const o of this.out.values()) clearTimeout(o.timer);
    this.out.clear(); // their leases end and another instance (or the next start) sends them again
    await this.drainer.stop();
    await this.flushReceipts();
  }

  private deliver(m: ClaimedMessage): void {
    const s = m.payload as OutgoingStanza;
    const c = this.options.connection;
    if (this.stopped || !c.online || !c.xml) {
      void this.drainer.defer([m.id], 1_000).catch((err: Error) => this.options.onError?.(err));
      return;
    }
    const timer = setTimeout(() => this.timedOut(m.messageId), this.options.receiptTimeoutMs);
    this.out.set(m.messageId, { row: m.id, peer: bareJid(s.peer), timer, sentAt: performance.now() });
    c.send(messageStanza(c.xml, s)).then(
      () => {
        this.sent++;
        this.options.onSent?.();
      },
      (err: Error) => this.fail(m.messageId, `not sent: ${err.message}`),
    );
  }

  private timedOut(id: string): void {
    this.fail(id, `no receipt within ${this.options.receiptTimeoutMs} ms`);
  }

  private fail(id: string, reason: string): void {
    const o = this.out.get(id);
    if (!o) return;
    clearTimeout(o.timer);
    this.out.delete(id);
    this.failed++;
    this.drainer.nack(o.row, reason).then(
      (outcome) => {
        metrics.delivery('xmpp', outcome.outcome === 'dead' ? 'dead' : 'retry', (performance.now() - o.sentAt) / 1000);
        this.options.onFailed?.(id, reason, outcome);
      },
      (err: Error) => this.options.onError?.(err),
    );
  }

  private receipt(id: string, peer: string): void {
    const o = this.out.get(id);
    if (o) {
      if (o.peer !== peer) return; // not the peer we sent it to
      clearTimeout(o.timer);
      this.out.delete(id);
      this.drainer.settled(o.row);
      metrics.delivery('xmpp', 'delivered', (performance.now() - o.sentAt) / 1000); // sent to the peer's receipt
    }
    this.receipts.push({ id, peer });
    if (this.receipts.length >= 500) void this.flushReceipts();
    else this.receiptTimer ??= setTimeout(() => void this.flushReceipts(), 5);
  }

  /** One DELETE for the receipts that arrived together; a row is only deleted by its own peer's receipt. */
  private async flushReceipts(): Promise<void> {
    if (this.receiptTimer) clearTimeout(this.receiptTimer);
    this.receiptTimer = undefined;
    const batch = this.receipts;
    this.receipts = [];
    if (batch.length === 0) return;
    try {
      const r = await this.options.sql.query(
        `DELETE FROM outbox o USING unnest($2::text[], $3::text[]) AS r(message_id, peer)
         WHERE o.queue = $1 AND o.message_id = r.message_id AND o.payload->>'peer' = r.peer`,
        [this.options.queue, batch.map((b) => b.id), batch.map((b) => b.peer)],
      );
      this.acked += r.rowCount;
      this.options.onAcked?.(r.rowCount);
    } catch (err) {
      // Not deleted: sent again after the lease, the peer drops the repeat and answers again.
      this.options.onError?.(err as Error);
    }
  }
}

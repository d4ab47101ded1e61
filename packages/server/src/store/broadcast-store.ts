/**
 * Broadcast history (table `broadcasts`): one row per live session of a stream, written when it starts and
 * completed when it ends, with its peak viewers and bytes. It outlives the stream's configuration. The start and
 * end rows carry their `stream.started` / `stream.ended` webhook events in the same transaction.
 */
import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DatabaseSchema } from './database.js';
import { enqueueEvent } from './webhook-store.js';

/** One past or running broadcast. */
export interface BroadcastRecord {
  id: string;
  stream: string;
  protocol: string;
  startedAt: string;
  /** Undefined while live (or if the server stopped without ending it). */
  endedAt: string | undefined;
  peakViewers: number;
  bytesIn: number;
  bytesOut: number;
}

/** Reads and writes `broadcasts`. */
export class BroadcastStore {
  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  /** Records a broadcast's start and emits `stream.started`; returns its id. */
  async start(stream: string, protocol: string, data: Record<string, unknown>, at = Date.now()): Promise<string> {
    const id = `bc_${randomBytes(9).toString('base64url')}`;
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto('broadcasts').values({ id, stream, protocol, started_at: at, ended_at: null, peak_viewers: 0, bytes_in: 0, bytes_out: 0 }).execute();
      await enqueueEvent(trx, { type: 'stream.started', stream, data: { name: stream, broadcastId: id, protocol, startedAt: new Date(at).toISOString(), ...data } });
    });
    return id;
  }

  /** Records a broadcast's end and emits `stream.ended`. */
  async end(id: string, totals: { peakViewers: number; bytesIn: number; bytesOut: number; reason: string }, at = Date.now()): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('broadcasts')
        .set({ ended_at: at, peak_viewers: totals.peakViewers, bytes_in: totals.bytesIn, bytes_out: totals.bytesOut })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst();
      if (!row) return;
      await enqueueEvent(trx, {
        type: 'stream.ended',
        stream: row.stream,
        data: { name: row.stream, broadcastId: id, startedAt: new Date(row.started_at).toISOString(), endedAt: new Date(at).toISOString(), durationMs: at - row.started_at, reason: totals.reason, peakViewers: totals.peakViewers, bytesIn: totals.bytesIn, bytesOut: totals.bytesOut },
      });
    });
  }

  /** Updates a running broadcast's figures (so a crash keeps the last ones). */
  async progress(id: string, totals: { peakViewers: number; bytesIn: number; bytesOut: number }): Promise<void> {
    await this.db.updateTable('broadcasts').set({ peak_viewers: totals.peakViewers, bytes_in: totals.bytesIn, bytes_out: totals.bytesOut }).where('id', '=', id).execute();
  }

  /** Ends every broadcast left open by a server that stopped without ending it (at its last figures). */
  async closeDangling(at = Date.now()): Promise<number> {
    const r = await this.db.updateTable('broadcasts').set({ ended_at: at }).where('ended_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Broadcasts of `stream` (every stream when undefined), newest first, `limit` before the cursor `before`. */
  async list(stream: string | undefined, limit: number, before?: { startedAt: number; id: string }): Promise<BroadcastRecord[]> {
    let q = this.db.selectFrom('broadcasts').selectAll().orderBy('started_at', 'desc').orderBy('id', 'desc').limit(limit);
    if (stream !== undefined) q = q.where('stream', '=', stream);
    if (before) q = q.where((eb) => eb.or([eb('started_at', '<', before.startedAt), eb.and([eb('started_at', '=', before.startedAt), eb('id', '<', before.id)])]));
    return (await q.execute()).map((r) => ({
      id: r.id,
      stream: r.stream,
      protocol: r.protocol,
      startedAt: new Date(r.started_at).toISOString(),
      endedAt: r.ended_at === null ? undefined : new Date(r.ended_at).toISOString(),
      peakViewers: r.peak_viewers,
      bytesIn: r.bytes_in,
      bytesOut: r.bytes_out,
    }));
  }
}

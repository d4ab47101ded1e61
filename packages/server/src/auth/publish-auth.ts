/** Publish authorization: which stream a stream key publishes to. */
import { GlasscastError } from '../core/errors.js';
import { STREAM_NAME_PATTERN } from '../core/stream-registry.js';
import type { StreamRecord } from '../store/stream-store.js';

/** The store lookup this needs. */
export interface StreamKeyLookup {
  findByKey(key: string): Promise<StreamRecord | undefined>;
}

/** Publish auth modes: `key` (a configured stream key) or `open` (the key is the stream name; development only). */
export type PublishAuthMode = 'key' | 'open';

/** Decides which stream a publisher with `key` may publish. */
export class PublishAuth {
  constructor(
    private readonly mode: PublishAuthMode,
    private readonly store: StreamKeyLookup,
  ) {}

  /**
   * Resolves the stream name (and its configuration, in key mode) for a stream key: the current key, or the
   * previous one while a rotation's grace period lasts.
   * @throws GlasscastError `PUBLISH_KEY_INVALID` when the key matches no stream (key mode) or is not a valid
   *   stream name (open mode).
   */
  async authorize(key: string): Promise<{ streamName: string; record: StreamRecord | undefined }> {
    if (this.mode === 'open') {
      if (!STREAM_NAME_PATTERN.test(key)) throw new GlasscastError('PUBLISH_KEY_INVALID', 'stream name not allowed');
      return { streamName: key, record: undefined };
    }
    const record = await this.store.findByKey(key);
    if (!record) throw new GlasscastError('PUBLISH_KEY_INVALID', 'invalid stream key');
    return { streamName: record.name, record };
  }
}

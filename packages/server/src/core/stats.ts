/**
 * One statistics shape for every entity (after mediasoup's `getStats()`): streams, publisher sessions,
 * subscribers, supervised jobs and viewer sessions all answer with {@link EntityStats}, so the API, logs and the
 * metrics endpoint read them the same way. Numbers that count or measure go in `counters` (a metrics exporter
 * turns each into a series); descriptive values go in `info`; what an entity owns goes in `children`.
 */

/** What kind of entity the stats describe. */
export type EntityType = 'stream' | 'publisher' | 'subscriber' | 'job' | 'viewer';

/** Statistics of one entity. */
export interface EntityStats {
  type: EntityType;
  /** Unique among entities of its type (a stream's name, a session id, `<stream>/<job>`). */
  id: string;
  /** Lifecycle state in the entity's own words (`live`, `reconnecting`, `running`, `degraded`, `closed`…). */
  state: string;
  /** When it was created, epoch ms. */
  createdAt: number;
  /** Counts and measurements; each key names its unit when it has one (`bytes`, `lagMs`, `bitrateBps`). */
  counters: Record<string, number>;
  /** Descriptive values (protocol, codec, encoder, the reason a job degraded…); undefined when unknown. */
  info: Record<string, string | number | boolean | undefined>;
  /** Entities this one owns (a stream's publisher and renditions; a job's outputs). */
  children: EntityStats[];
}

/** Builds an {@link EntityStats} with empty counters, info and children unless given. */
export function entityStats(type: EntityType, id: string, state: string, createdAt: number, parts: Partial<Pick<EntityStats, 'counters' | 'info' | 'children'>> = {}): EntityStats {
  return { type, id, state, createdAt, counters: parts.counters ?? {}, info: parts.info ?? {}, children: parts.children ?? [] };
}

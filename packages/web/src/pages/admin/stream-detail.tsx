/**
 * Admin → one stream: its live view (ingest bitrate and frame rate, viewers per protocol over time, keyframe
 * interval, transcoder, viewers' QoE), its sessions with kick, its settings, its publish settings ready to paste
 * (OBS, FFmpeg, WHIP, SRT) with key rotation, watch links with a playback token, and deletion.
 */
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { Link, useLocation } from 'wouter';
import { api } from '../../api.js';
import { CopyButton } from '../../components/copy-button.js';
import { bitrate, bytes, uptime } from '../../format.js';
import { useNow } from '../../events.js';
import { Chart } from './chart.js';
import { ConfirmButton, ErrorLine, Table, useAction } from './common.js';

interface AdminStream {
  name: string;
  title: string;
  description: string;
  visibility: 'public' | 'unlisted' | 'private';
  record: boolean;
  state: 'live' | 'reconnecting' | 'offline';
  previousKeyExpiresAt: string | null;
  playback: { watch: string };
}

interface StreamKey {
  key: string;
  previousKeyExpiresAt: string | null;
  rtmp: { server: string; streamKey: string };
  whip: { url: string; bearerToken: string };
  srt: { server: string; streamId: string; url: string; passphrase: string | null };
}

interface Qoe {
  viewers: number;
  joinMs: { p50: number; p95: number } | null;
  latencyMs: { p50: number; p95: number } | null;
  rebufferRatio: number;
  rebuffers: number;
  switches: number;
  errors: { code: string; count: number }[];
}

interface Stats {
  state: string;
  startedAt: string | null;
  bitrateIn: number;
  fps: number;
  keyframeIntervalMs: number | null;
  viewers: Record<string, number>;
  viewersByRendition: { protocol: string; rendition: string; viewers: number }[];
  peakViewers: number;
  health: string[];
  transcode: { degraded: boolean; shed: string | null; reason: string | null } | null;
  qoe: Qoe | null;
}

interface Session {
  id: string;
  role: 'publisher' | 'viewer';
  protocol: string;
  address: string | null;
  startedAt: string;
  bytes: number;
  rendition: string | null;
  viewerId: string | null;
}

/** Samples kept for the graphs: 5 minutes at one every 2 s. */
const HISTORY = 150;

function LiveView({ name }: { name: string }) {
  const stats = useQuery({ queryKey: ['admin', 'stats', name], queryFn: () => api<Stats>(`/streams/${encodeURIComponent(name)}/stats`), refetchInterval: 2000 });
  const history = useRef<{ t: number[]; bitrate: number[]; fps: number[]; whep: number[]; llhls: number[]; srt: number[]; renditions: Map<string, number[]> }>({ t: [], bitrate: [], fps: [], whep: [], llhls: [], srt: [], renditions: new Map() });
  const [, setVersion] = useState(0);
  const now = useNow();
  useEffect(() => {
    const s = stats.data;
    if (!s) return;
    const h = history.current;
    h.t.push(Math.round(stats.dataUpdatedAt / 1000));
    h.bitrate.push(s.bitrateIn / 1e6);
    h.fps.push(s.fps);
    h.whep.push(s.viewers['whep'] ?? 0);
    h.llhls.push(s.viewers['llhls'] ?? 0);
    h.srt.push(s.viewers['srt'] ?? 0);
    // Viewers per rendition, every protocol together; a rendition seen for the first time starts at 0.
    const byRendition = new Map<string, number>();
    for (const v of s.viewersByRendition) byRendition.set(v.rendition, (byRendition.get(v.rendition) ?? 0) + v.viewers);
    for (const id of byRendition.keys()) if (!h.renditions.has(id)) h.renditions.set(id, new Array<number>(h.t.length - 1).fill(0));
    for (const [id, values] of h.renditions) values.push(byRendition.get(id) ?? 0);
    for (const a of [h.t, h.bitrate, h.fps, h.whep, h.llhls, h.srt, ...h.renditions.values()]) if (a.length > HISTORY) a.shift();
    setVersion((v) => v + 1);
  }, [stats.data, stats.dataUpdatedAt]);
  const s = stats.data;
  const h = history.current;
  const q = s?.qoe;
  return (
    <section aria-labelledby="live-title">
      <h2 id="live-title">Live view</h2>
      <ErrorLine error={stats.error} />
      {s ? (
        <dl className="figures">
          <div>
            <dt>State</dt>
            <dd id="live-state">{s.state}</dd>
          </div>
          <div>
            <dt>Uptime</dt>
            <dd>{uptime(s.startedAt, now) || '–'}</dd>
          </div>
          <div>
            <dt>Ingest</dt>
            <dd>
              {bitrate(s.bitrateIn)} · {s.fps} fps
            </dd>
          </div>
          <div>
            <dt>Keyframe interval</dt>
            <dd>{s.keyframeIntervalMs === null ? '–' : `${(s.keyframeIntervalMs / 1000).toFixed(1)} s`}</dd>
          </div>
          <div>
            <dt>Viewers (peak)</dt>
            <dd>
              {Object.values(s.viewers).reduce((a, b) => a + b, 0)} ({s.peakViewers})
            </dd>
          </div>
          <div>
            <dt>Transcoder</dt>
            <dd>{s.transcode ? (s.transcode.degraded ? `degraded: ${s.transcode.shed ?? ''} ${s.transcode.reason ?? ''}` : 'healthy') : 'none'}</dd>
          </div>
          <div>
            <dt>Health</dt>
            <dd>{s.health.length ? s.health.join(', ') : 'ok'}</dd>
          </div>
        </dl>
      ) : null}
      <div className="charts">
        <Chart title="Ingest bitrate (Mb/s) and frame rate" x={h.t} series={[{ label: 'Mb/s', values: h.bitrate }, { label: 'fps', values: h.fps }]} />
        <Chart title="Viewers per protocol" x={h.t} series={[{ label: 'WebRTC', values: h.whep }, { label: 'LL-HLS', values: h.llhls }, { label: 'SRT', values: h.srt }]} />
        {h.renditions.size > 0 ? <Chart title="Viewers per rendition" x={h.t} series={[...h.renditions].map(([label, values]) => ({ label, values }))} /> : null}
      </div>
      <h3>Viewers' experience (last 5 minutes)</h3>
      {q ? (
        <dl className="figures" id="qoe">
          <div>
            <dt>Reporting</dt>
            <dd>{q.viewers}</dd>
          </div>
          <div>
            <dt>Rebuffer ratio</dt>
            <dd id="qoe-rebuffer" data-ratio={q.rebufferRatio}>
              {(q.rebufferRatio * 100).toFixed(1)} %
            </dd>
          </div>
          <div>
            <dt>Join time p50 / p95</dt>
            <dd>{q.joinMs ? `${q.joinMs.p50} / ${q.joinMs.p95} ms` : '–'}</dd>
          </div>
          <div>
            <dt>Latency p50 / p95</dt>
            <dd>{q.latencyMs ? `${q.latencyMs.p50} / ${q.latencyMs.p95} ms` : '–'}</dd>
          </div>
          <div>
            <dt>Stalls · switches</dt>
            <dd>
              {q.rebuffers} · {q.switches}
            </dd>
          </div>
          <div>
            <dt>Errors</dt>
            <dd>{q.errors.length ? q.errors.map((e) => `${e.code} ×${e.count}`).join(', ') : 'none'}</dd>
          </div>
        </dl>
      ) : (
        <p className="hint">No player has reported yet.</p>
      )}
    </section>
  );
}

function Sessions({ name }: { name: string }) {
  const client = useQueryClient();
  const sessions = useQuery({ queryKey: ['admin', 'sessions', name], queryFn: () => api<{ items: Session[] }>(`/streams/${encodeURIComponent(name)}/sessions`), refetchInterval: 2000 });
  const action = useAction();
  const kick = (id: string): Promise<void> =>
    action.run(async () => {
      await api(`/streams/${encodeURIComponent(name)}/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' });
      await client.invalidateQueries({ queryKey: ['admin', 'sessions', name] });
    });
  const items = sessions.data?.items ?? [];
  return (
    <section aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions</h2>
      <ErrorLine error={sessions.error ?? action.error} />
      {items.length === 0 ? (
        <p className="hint">No publisher and no viewers right now.</p>
      ) : (
        <Table columns={['Role', 'Protocol', 'Rendition', 'Viewer', 'Address', 'Since', 'Bytes', '']} id="sessions">
          {items.map((s) => (
            <tr key={s.id} data-session={s.id} data-role={s.role} data-protocol={s.protocol}>
              <td>{s.role}</td>
              <td>{s.protocol}</td>
              <td>{s.rendition ?? '–'}</td>
              <td>{s.viewerId ?? '–'}</td>
              <td>{s.address ?? '–'}</td>
              <td>{new Date(s.startedAt).toLocaleTimeString()}</td>
              <td>{bytes(s.bytes)}</td>
              <td>
                <button type="button" className="small danger" onClick={() => void kick(s.id)} disabled={action.busy}>
                  {s.role === 'publisher' ? 'Disconnect' : 'Kick'}
                </button>
              </td>
            </tr>
          ))}
        </Table>
      )}
    </section>
  );
}

function Settings({ stream }: { stream: AdminStream }) {
  const client = useQueryClient();
  const [title, setTitle] = useState(stream.title);
  const [description, setDescription] = useState(stream.description);
  const [visibility, setVisibility] = useState(stream.visibility);
  const [record, setRecord] = useState(stream.record);
  const action = useAction();
  const [saved, setSaved] = useState(false);
  return (
    <section aria-labelledby="settings-title">
      <h2 id="settings-title">Settings</h2>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          setSaved(false);
          void action.run(async () => {
            await api(`/streams/${encodeURIComponent(stream.name)}`, { method: 'PATCH', body: { title, description, visibility, record } });
            await client.invalidateQueries({ queryKey: ['admin', 'stream', stream.name] });
            setSaved(true);
          });
        }}
      >
        <label>
          Title <input value={title} onChange={(e) => setTitle(e.target.value)} maxLength={200} />
        </label>
        <label>
          Description <textarea value={description} onChange={(e) => setDescription(e.target.value)} maxLength={5000} rows={3} />
        </label>
        <label>
          Visibility
          <select id="visibility" value={visibility} onChange={(e) => setVisibility(e.target.value as AdminStream['visibility'])}>
            <option value="public">Public (listed)</option>
            <option value="unlisted">Unlisted (link only)</option>
            <option value="private">Private (token needed)</option>
          </select>
        </label>
        <label className="check">
          <input type="checkbox" checked={record} onChange={(e) => setRecord(e.target.checked)} /> Record every broadcast
        </label>
        <div>
          <button type="submit" className="primary" disabled={action.busy}>
            Save
          </button>{' '}
          <span role="status">{saved ? 'Saved.' : ''}</span>
        </div>
        <ErrorLine error={action.error} />
      </form>
    </section>
  );
}

function Field({ label, value, secret, id }: { label: string; value: string; secret?: boolean; id?: string }) {
  const [shown, setShown] = useState(!secret);
  return (
    <div className="field">
      <span className="field-label">{label}</span>
      <code id={id} data-value={value}>
        {shown ? value : '•'.repeat(Math.min(24, value.length))}
      </code>
      {secret ? (
        <button type="button" className="small" onClick={() => setShown(!shown)} aria-pressed={shown}>
          {shown ? 'Hide' : 'Show'}
        </button>
      ) : null}
      <CopyButton text={value} />
    </div>
  );
}

function PublishSettings({ name }: { name: string }) {
  const client = useQueryClient();
  const key = useQuery({ queryKey: ['admin', 'key', name], queryFn: () => api<StreamKey>(`/streams/${encodeURIComponent(name)}/key`) });
  const action = useAction();
  const [immediate, setImmediate] = useState(true);
  const k = key.data;
  const rotate = (): Promise<void> =>
    action.run(async () => {
      await api(`/streams/${encodeURIComponent(name)}/key/rotate`, { method: 'POST', body: { graceSeconds: immediate ? 0 : 300 } });
      await client.invalidateQueries({ queryKey: ['admin', 'key', name] });
    });
  return (
    <section aria-labelledby="publish-title">
      <h2 id="publish-title">Publish settings</h2>
      <ErrorLine error={key.error ?? action.error} />
      {k ? (
        <>
          <h3>OBS (RTMP)</h3>
          <Field label="Server" value={k.rtmp.server} />
          <Field label="Stream key" value={k.rtmp.streamKey} secret id="stream-key" />
          <h3>FFmpeg</h3>
          <Field label="Command" value={`ffmpeg -re -i input.mp4 -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac -f flv ${k.rtmp.server}/${k.rtmp.streamKey}`} secret />
          <h3>WHIP (OBS 30+, browsers)</h3>
          <Field label="URL" value={k.whip.url} />
          <Field label="Bearer token" value={k.whip.bearerToken} secret />
          <h3>SRT</h3>
          <Field label="Server" value={k.srt.server} />
          <Field label="Stream ID" value={k.srt.streamId} secret />
          <Field label="FFmpeg URL" value={k.srt.url} secret />
          {k.srt.passphrase ? <Field label="Passphrase" value={k.srt.passphrase} secret /> : null}
          <p>
            <Link href={`~/broadcast?stream=${encodeURIComponent(name)}`}>Go live from the browser</Link>
          </p>
          <div className="controls">
            <label className="check">
              <input type="checkbox" checked={immediate} onChange={(e) => setImmediate(e.target.checked)} /> Old key stops at once (otherwise in 5 minutes)
            </label>
            <button id="rotate-key" type="button" className="danger" onClick={() => void rotate()} disabled={action.busy}>
              Rotate key
            </button>
          </div>
          {k.previousKeyExpiresAt ? <p className="hint">The previous key publishes until {new Date(k.previousKeyExpiresAt).toLocaleTimeString()}.</p> : null}
        </>
      ) : null}
    </section>
  );
}

function WatchLinks({ stream }: { stream: AdminStream }) {
  const action = useAction();
  const [link, setLink] = useState<string>();
  const [hours, setHours] = useState(2);
  const [viewerId, setViewerId] = useState('');
  const watch = new URL(`/watch/${encodeURIComponent(stream.name)}`, window.location.origin).href;
  return (
    <section aria-labelledby="links-title">
      <h2 id="links-title">Watch links</h2>
      {stream.visibility === 'private' ? (
        <>
          <p className="hint">A private stream plays only with a playback token. Each link carries one; it expires.</p>
          <div className="controls">
            <label>
              Valid for (hours) <input type="number" min={1} max={168} value={hours} onChange={(e) => setHours(Number(e.target.value))} />
            </label>
            <label>
              Viewer name (optional) <input id="token-viewer" value={viewerId} onChange={(e) => setViewerId(e.target.value)} maxLength={200} />
            </label>
            <button
              id="mint-token"
              type="button"
              className="primary"
              disabled={action.busy}
              onClick={() =>
                void action.run(async () => {
                  const t = await api<{ token: string }>(`/streams/${encodeURIComponent(stream.name)}/playback-tokens`, { method: 'POST', body: { ttlSeconds: hours * 3600, ...(viewerId ? { viewerId } : {}) } });
                  setLink(`${watch}?token=${encodeURIComponent(t.token)}`);
                })
              }
            >
              Make a watch link
            </button>
          </div>
          {link ? <Field label="Link" value={link} id="watch-link-token" /> : null}
          <ErrorLine error={action.error} />
        </>
      ) : (
        <Field label="Link" value={watch} />
      )}
    </section>
  );
}

export function StreamDetail({ name }: { name: string }) {
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const stream = useQuery({ queryKey: ['admin', 'stream', name], queryFn: () => api<AdminStream>(`/streams/${encodeURIComponent(name)}/admin`), refetchInterval: 2000 });
  const action = useAction();
  const s = stream.data;
  return (
    <>
      <p>
        <Link href="/">← Streams</Link>
      </p>
      <h2 className="stream-name">
        {s?.title ? `${s.title} (${name})` : name} {s ? <span className={`badge ${s.state === 'offline' ? 'offline' : 'live'}`}>{s.state}</span> : null}{' '}
        <Link href={`~/watch/${encodeURIComponent(name)}`}>Watch</Link>
      </h2>
      <ErrorLine error={stream.error ?? action.error} />
      {s ? (
        <div className="columns">
          <div>
            <LiveView name={name} />
            <Sessions name={name} />
          </div>
          <div>
            <Settings stream={s} key={s.visibility + s.title + s.record} />
            <WatchLinks stream={s} />
            <PublishSettings name={name} />
            <section aria-labelledby="danger-title">
              <h2 id="danger-title">Delete</h2>
              <ConfirmButton
                label="Delete stream"
                question={`Delete stream ${name}? Its publisher and viewers are disconnected.`}
                disabled={action.busy} small={false}
                onConfirm={() =>
                  void action.run(async () => {
                    await api(`/streams/${encodeURIComponent(name)}`, { method: 'DELETE' });
                    await client.invalidateQueries({ queryKey: ['admin', 'streams'] });
                    navigate('/');
                  })
                }
              />
            </section>
          </div>
        </div>
      ) : null}
    </>
  );
}

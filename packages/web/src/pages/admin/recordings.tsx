/** Admin → Recordings: every recording (newest first) with its state and upload state; play, download, delete. */
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Link } from 'wouter';
import { api, type Page, type Recording } from '../../api.js';
import { bytes, duration } from '../../format.js';
import { ConfirmButton, ErrorLine, Table, useAction } from './common.js';

const STATE: Record<Recording['state'], string> = {
  recording: 'recording now',
  finalizing: 'finishing',
  ready: 'ready (on this server)',
  failed: 'failed',
  uploading: 'uploading to storage',
  uploaded: 'uploaded to storage',
};

export function Recordings() {
  const client = useQueryClient();
  const list = useQuery({ queryKey: ['admin', 'recordings'], queryFn: () => api<Page<Recording>>('/recordings?limit=100'), refetchInterval: 5000 });
  const action = useAction();
  const items = list.data?.items ?? [];
  return (
    <section aria-labelledby="recordings-title">
      <h2 id="recordings-title">Recordings</h2>
      <ErrorLine error={list.error ?? action.error} />
      {items.length === 0 && list.data ? <p className="hint">No recordings yet. Turn on “Record” for a stream, or run Glasscast with --record all.</p> : null}
      <Table columns={['Stream', 'Started', 'Length', 'Size', 'State', '']}>
        {items.map((r) => (
          <tr key={r.id} data-recording={r.id}>
            <td>{r.stream}</td>
            <td>{new Date(r.startedAt).toLocaleString()}</td>
            <td>{duration(r.durationMs)}</td>
            <td>{bytes(r.sizeBytes)}</td>
            <td>
              {STATE[r.state]}
              {r.error ? ` (${r.error})` : ''}
            </td>
            <td className="actions">
              <Link href={`~/watch/${encodeURIComponent(r.stream)}/${r.id}`}>Play</Link>
              {r.state !== 'recording' && r.state !== 'finalizing' && r.state !== 'failed' ? (
                <a href={`/vod/${encodeURIComponent(r.id)}.mp4`} download>
                  Download
                </a>
              ) : null}
              <ConfirmButton
                label="Delete"
                question={`Delete this recording of ${r.stream}? Its files go too.`}
                disabled={action.busy || r.state === 'recording' || r.state === 'finalizing'}
                onConfirm={() =>
                  void action.run(async () => {
                    await api(`/recordings/${encodeURIComponent(r.id)}`, { method: 'DELETE' });
                    await client.invalidateQueries({ queryKey: ['admin', 'recordings'] });
                  })
                }
              />
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

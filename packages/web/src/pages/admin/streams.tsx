/** Admin → Streams: every stream with its state, and a form to create one (its key is shown once created). */
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useLocation } from 'wouter';
import { api } from '../../api.js';
import { viewers } from '../../format.js';
import { ErrorLine, Table, useAction } from './common.js';

interface ListedStream {
  name: string;
  title: string;
  visibility: 'public' | 'unlisted' | 'private';
  state: 'live' | 'reconnecting' | 'offline';
  viewers: number;
}

function CreateStream() {
  const client = useQueryClient();
  const [name, setName] = useState('');
  const [title, setTitle] = useState('');
  const [visibility, setVisibility] = useState('public');
  const [record, setRecord] = useState(false);
  const action = useAction();
  const [, navigate] = useLocation();
  return (
    <form
      className="controls"
      aria-label="Create a stream"
      onSubmit={(e) => {
        e.preventDefault();
        void action.run(async () => {
          await api('/streams', { method: 'POST', body: { name: name.trim(), title: title.trim() || undefined, visibility, record } });
          const created = name.trim();
          setName('');
          setTitle('');
          await client.invalidateQueries({ queryKey: ['admin', 'streams'] });
          navigate(`/streams/${encodeURIComponent(created)}`);
        });
      }}
    >
      <label>
        Name <input id="new-stream-name" value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,63}" placeholder="e.g. town-hall" />
      </label>
      <label>
        Title <input id="new-stream-title" value={title} onChange={(e) => setTitle(e.target.value)} maxLength={200} />
      </label>
      <label>
        Visibility
        <select id="new-stream-visibility" value={visibility} onChange={(e) => setVisibility(e.target.value)}>
          <option value="public">Public (listed)</option>
          <option value="unlisted">Unlisted (link only)</option>
          <option value="private">Private (token needed)</option>
        </select>
      </label>
      <label className="check">
        <input type="checkbox" checked={record} onChange={(e) => setRecord(e.target.checked)} /> Record
      </label>
      <button id="create-stream" type="submit" className="primary" disabled={action.busy}>
        Create stream
      </button>
      <ErrorLine error={action.error} />
    </form>
  );
}

export function Streams() {
  const streams = useQuery({ queryKey: ['admin', 'streams'], queryFn: () => api<{ streams: ListedStream[] }>('/streams?limit=100'), refetchInterval: 3000 });
  return (
    <section aria-labelledby="streams-title">
      <h2 id="streams-title">Streams</h2>
      <CreateStream />
      <ErrorLine error={streams.error} />
      <Table columns={['Stream', 'Visibility', 'State', 'Viewers']}>
        {(streams.data?.streams ?? []).map((s) => (
          <tr key={s.name} data-stream={s.name}>
            <td>
              <Link href={`/streams/${encodeURIComponent(s.name)}`}>{s.title ? `${s.title} (${s.name})` : s.name}</Link>
            </td>
            <td>{s.visibility}</td>
            <td>
              <span className={`badge ${s.state === 'offline' ? 'offline' : 'live'}`}>{s.state}</span>
            </td>
            <td>{s.state === 'offline' ? '–' : viewers(s.viewers)}</td>
          </tr>
        ))}
      </Table>
      {streams.data && streams.data.streams.length === 0 ? <p className="hint">No streams yet: create one above, then publish to it with its key.</p> : null}
    </section>
  );
}

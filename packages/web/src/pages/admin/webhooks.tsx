/** Admin → Webhooks: subscriptions (create, test, delete) and each one's delivery log with redelivery. */
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type Page } from '../../api.js';
import { CopyButton } from '../../components/copy-button.js';
import { ConfirmButton, ErrorLine, Table, useAction } from './common.js';

interface Webhook {
  id: string;
  url: string;
  events: string[];
  createdAt: string;
  disabled: boolean;
}

interface Message {
  id: string;
  type: string;
  stream: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  createdAt: string;
  deliveredAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
}

function DeliveryLog({ hook }: { hook: Webhook }) {
  const client = useQueryClient();
  const log = useQuery({ queryKey: ['admin', 'webhook-log', hook.id], queryFn: () => api<Page<Message>>(`/webhooks/${hook.id}/messages?limit=50`), refetchInterval: 2000 });
  const action = useAction();
  const items = log.data?.items ?? [];
  return (
    <div className="log">
      <ErrorLine error={log.error ?? action.error} />
      {items.length === 0 ? (
        <p className="hint">Nothing sent yet.</p>
      ) : (
        <Table columns={['Event', 'Stream', 'Created', 'State', 'Attempts', 'Last answer', '']} className="delivery-log" webhook={hook.id}>
          {items.map((m) => (
            <tr key={m.id} data-message={m.id} data-type={m.type} data-state={m.state}>
              <td>{m.type}</td>
              <td>{m.stream || '–'}</td>
              <td>{new Date(m.createdAt).toLocaleTimeString()}</td>
              <td>{m.state}</td>
              <td>{m.attempts}</td>
              <td>{m.lastStatus ?? m.lastError ?? '–'}</td>
              <td>
                <button
                  type="button"
                  className="small"
                  disabled={action.busy}
                  onClick={() =>
                    void action.run(async () => {
                      await api(`/webhooks/${hook.id}/messages/${m.id}/redeliver`, { method: 'POST' });
                      await client.invalidateQueries({ queryKey: ['admin', 'webhook-log', hook.id] });
                    })
                  }
                >
                  Redeliver
                </button>
              </td>
            </tr>
          ))}
        </Table>
      )}
    </div>
  );
}

function CreateWebhook() {
  const client = useQueryClient();
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState('*');
  const [secret, setSecret] = useState<string>();
  const action = useAction();
  return (
    <>
      <form
        className="controls"
        aria-label="Add a webhook"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(async () => {
            const created = await api<{ secret: string }>('/webhooks', { method: 'POST', body: { url: url.trim(), events: events.split(/[\s,]+/).filter(Boolean) } });
            setSecret(created.secret);
            setUrl('');
            await client.invalidateQueries({ queryKey: ['admin', 'webhooks'] });
          });
        }}
      >
        <label>
          URL <input id="webhook-url" type="url" value={url} onChange={(e) => setUrl(e.target.value)} required placeholder="https://example.com/hooks/glasscast" />
        </label>
        <label>
          Events <input id="webhook-events" value={events} onChange={(e) => setEvents(e.target.value)} placeholder="* or stream.started, stream.ended" />
        </label>
        <button id="create-webhook" type="submit" className="primary" disabled={action.busy}>
          Add webhook
        </button>
      </form>
      {secret ? (
        <p className="hint">
          Signing secret (shown once): <code>{secret}</code> <CopyButton text={secret} />
        </p>
      ) : null}
      <ErrorLine error={action.error} />
    </>
  );
}

export function Webhooks() {
  const client = useQueryClient();
  const hooks = useQuery({ queryKey: ['admin', 'webhooks'], queryFn: () => api<Page<Webhook>>('/webhooks?limit=100') });
  const action = useAction();
  const [open, setOpen] = useState<string>();
  return (
    <section aria-labelledby="webhooks-title">
      <h2 id="webhooks-title">Webhooks</h2>
      <CreateWebhook />
      <ErrorLine error={hooks.error ?? action.error} />
      <ul className="list">
        {(hooks.data?.items ?? []).map((h) => (
          <li key={h.id} data-webhook={h.id}>
            <div className="controls">
              <code>{h.url}</code>
              <span className="hint">{h.events.join(', ')}</span>
              <button
                type="button"
                className="small"
                disabled={action.busy}
                onClick={() =>
                  void action.run(async () => {
                    await api(`/webhooks/${h.id}/test`, { method: 'POST' });
                    setOpen(h.id);
                    await client.invalidateQueries({ queryKey: ['admin', 'webhook-log', h.id] });
                  })
                }
              >
                Send test
              </button>
              <button type="button" className="small" aria-expanded={open === h.id} onClick={() => setOpen(open === h.id ? undefined : h.id)}>
                Delivery log
              </button>
              <ConfirmButton
                label="Remove"
                question={`Remove the webhook to ${h.url}?`}
                disabled={action.busy}
                onConfirm={() =>
                  void action.run(async () => {
                    await api(`/webhooks/${h.id}`, { method: 'DELETE' });
                    await client.invalidateQueries({ queryKey: ['admin', 'webhooks'] });
                  })
                }
              />
            </div>
            {open === h.id ? <DeliveryLog hook={h} /> : null}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** Admin → API keys: every key (never its token), a form to make one (its token shown once), and revoke. */
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, type Page } from '../../api.js';
import { CopyButton } from '../../components/copy-button.js';
import { ConfirmButton, ErrorLine, Table, useAction } from './common.js';

const SCOPES = ['admin', 'streams:read', 'streams:write', 'stats:read', 'webhooks', 'playback-tokens', 'api-keys'] as const;

interface Key {
  id: string;
  name: string;
  scopes: string[];
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export function ApiKeys() {
  const client = useQueryClient();
  const keys = useQuery({ queryKey: ['admin', 'api-keys'], queryFn: () => api<Page<Key>>('/api-keys?limit=100') });
  const action = useAction();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['streams:read', 'stats:read']);
  const [token, setToken] = useState<string>();
  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <form
        className="controls"
        aria-label="Make an API key"
        onSubmit={(e) => {
          e.preventDefault();
          void action.run(async () => {
            const k = await api<{ token: string }>('/api-keys', { method: 'POST', body: { name: name.trim(), scopes } });
            setToken(k.token);
            setName('');
            await client.invalidateQueries({ queryKey: ['admin', 'api-keys'] });
          });
        }}
      >
        <label>
          Name <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} placeholder="e.g. grafana" />
        </label>
        <fieldset>
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label key={s} className="check">
              <input type="checkbox" checked={scopes.includes(s)} onChange={(e) => setScopes(e.target.checked ? [...scopes, s] : scopes.filter((x) => x !== s))} /> {s}
            </label>
          ))}
        </fieldset>
        <button type="submit" className="primary" disabled={action.busy || scopes.length === 0}>
          Make key
        </button>
      </form>
      {token ? (
        <p className="hint">
          The new key (shown once): <code>{token}</code> <CopyButton text={token} />
        </p>
      ) : null}
      <ErrorLine error={keys.error ?? action.error} />
      <Table columns={['Name', 'Scopes', 'Created', 'Last used', '']}>
        {(keys.data?.items ?? []).map((k) => (
          <tr key={k.id}>
            <td>{k.name}</td>
            <td>{k.scopes.join(', ')}</td>
            <td>{new Date(k.createdAt).toLocaleDateString()}</td>
            <td>{k.revokedAt ? 'revoked' : k.lastUsedAt ? new Date(k.lastUsedAt).toLocaleString() : 'never'}</td>
            <td>
              {k.revokedAt ? null : (
                <ConfirmButton
                  label="Revoke"
                  question={`Revoke the key ${k.name}? Whatever uses it stops working.`}
                  disabled={action.busy}
                  onConfirm={() =>
                    void action.run(async () => {
                      await api(`/api-keys/${k.id}`, { method: 'DELETE' });
                      await client.invalidateQueries({ queryKey: ['admin', 'api-keys'] });
                    })
                  }
                />
              )}
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

/**
 * The admin dashboard, `/admin` (loaded when visited): sign in with an API key (kept in sessionStorage for this
 * tab, never in a URL), then streams, a stream's live view, recordings, webhooks and API keys.
 */
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, Route, Switch, useLocation } from 'wouter';
import { api, ApiError, apiKey, setApiKey } from '../../api.js';
import { ApiKeys } from './api-keys.js';
import { Recordings } from './recordings.js';
import { StreamDetail } from './stream-detail.js';
import { Streams } from './streams.js';
import { Webhooks } from './webhooks.js';

function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    setApiKey(key.trim());
    try {
      await api('/streams?limit=1');
      await api('/api-keys?limit=1').catch((err: unknown) => {
        // A key without every scope still signs in; pages it cannot use say so.
        if (!(err instanceof ApiError && err.status === 403)) throw err;
      });
      onSignedIn();
    } catch (err) {
      setApiKey(undefined);
      setError(err instanceof ApiError && err.status === 401 ? 'That API key is unknown or revoked.' : `Cannot sign in: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="page narrow">
      <h1>Admin</h1>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <label>
          API key
          <input id="api-key" type="password" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} placeholder="gcs_…" required />
        </label>
        <p className="hint">The first start of Glasscast prints an admin API token; more keys are made here once signed in. It stays in this tab only.</p>
        <button id="sign-in" type="submit" className="primary" disabled={busy}>
          Sign in
        </button>
        {error ? (
          <p className="status error" role="alert">
            {error}
          </p>
        ) : null}
      </form>
    </main>
  );
}

export default function Admin() {
  const [signedIn, setSignedIn] = useState(apiKey() !== undefined);
  const [location] = useLocation();
  const client = useQueryClient();
  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  const tab = (href: string, label: string) => (
    <Link href={href} aria-current={(href === '/' ? location === '/' || location.startsWith('/streams') : location.startsWith(href)) ? 'page' : undefined}>
      {label}
    </Link>
  );
  return (
    <main className="page admin">
      <div className="title-row">
        <h1>Admin</h1>
        <nav className="tabs" aria-label="Admin">
          {tab('/', 'Streams')}
          {tab('/recordings', 'Recordings')}
          {tab('/webhooks', 'Webhooks')}
          {tab('/keys', 'API keys')}
        </nav>
        <button
          type="button"
          className="small"
          onClick={() => {
            setApiKey(undefined);
            client.clear();
            setSignedIn(false);
          }}
        >
          Sign out
        </button>
      </div>
      <Switch>
        <Route path="/" component={Streams} />
        <Route path="/streams/:name">{(p) => <StreamDetail key={p.name} name={decodeURIComponent(p.name)} />}</Route>
        <Route path="/recordings" component={Recordings} />
        <Route path="/webhooks" component={Webhooks} />
        <Route path="/keys" component={ApiKeys} />
      </Switch>
    </main>
  );
}

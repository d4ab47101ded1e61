/**
 * The Glasscast web app: one page, client-side routes. `/` the directory, `/watch/<name>` a live stream,
 * `/watch/<name>/<recordingId>` a recording, `/broadcast` going live from the browser, `/admin` the dashboard, `/diagnostics` the connection test.
 * The watch page and the directory are in the first chunk; go-live, recordings and admin load when visited, and
 * hls.js only when a page plays LL-HLS (a WebRTC viewer never loads it).
 */
// First: on a direct load of a watch page, this starts the player before React is even evaluated.
import './watch-player.js';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { lazy, StrictMode, Suspense } from 'react';
import { createRoot } from 'react-dom/client';
import { Route, Switch } from 'wouter';
import { Header } from './components/header.js';
import { Directory } from './pages/directory.js';
import { Watch } from './pages/watch.js';
import './style.css';

const Broadcast = lazy(() => import('./pages/broadcast.js'));
const RecordingPage = lazy(() => import('./pages/recording.js'));
const Admin = lazy(() => import('./pages/admin/admin.js'));
const Diagnostics = lazy(() => import('./pages/diagnostics.js'));

const queries = new QueryClient({ defaultOptions: { queries: { retry: 1, refetchOnWindowFocus: true, staleTime: 2000 } } });

function NotFound() {
  return (
    <main className="page">
      <h1>Not found</h1>
      <p>
        There is nothing at this address. <a href="/">See what is live</a>.
      </p>
    </main>
  );
}

function App() {
  return (
    <>
      <a className="skip" href="#content">
        Skip to content
      </a>
      <Header />
      <div id="content">
        <Suspense fallback={<main className="page" aria-busy="true" />}>
          <Switch>
            <Route path="/" component={Directory} />
            <Route path="/watch/:name">{(p) => <Watch key={p.name} name={decodeURIComponent(p.name)} />}</Route>
            <Route path="/watch/:name/:recording">{(p) => <RecordingPage key={p.recording} name={decodeURIComponent(p.name)} id={p.recording} />}</Route>
            <Route path="/broadcast" component={Broadcast} />
            <Route path="/diagnostics" component={Diagnostics} />
            <Route path="/admin" nest>
              <Admin />
            </Route>
            <Route component={NotFound} />
          </Switch>
        </Suspense>
      </div>
    </>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queries}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);

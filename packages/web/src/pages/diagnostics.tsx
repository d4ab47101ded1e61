/**
 * "Why can't I connect", `/diagnostics`: runs the browser's connection tests (connection-test.ts) against this
 * server and says in one sentence what works and what the operator should open or forward, with the figures
 * behind it (HTTP round trip, WebRTC over UDP and over TCP, the browser's candidates) and the server's view of each
 * test (which candidate pair won, or why it failed). The watch page links here when WebRTC could not connect.
 */
import { useEffect, useState } from 'react';
import { runConnectionTest, type ConnectionReport, type TransportResult } from '../connection-test.js';

const OUTCOME: Record<TransportResult['outcome'], string> = { connected: 'Connected', failed: 'Failed', unavailable: 'Not offered', error: 'Error' };

function TransportRow({ label, r }: { label: string; r: TransportResult }) {
  const server = r.server;
  const serverSaw = server?.path ? `${server.path.transport.toUpperCase()} from ${server.path.remote} in ${server.connectMs} ms` : (server?.failure ?? '–');
  return (
    <tr data-transport={r.transport} data-outcome={r.outcome}>
      <th scope="row">{label}</th>
      <td className={r.outcome === 'connected' ? 'ok' : 'fail'}>{OUTCOME[r.outcome]}</td>
      <td>{r.outcome === 'connected' ? `${r.connectMs} ms` : (r.detail ?? '–')}</td>
      <td>{r.rttMs !== undefined ? `${r.rttMs} ms` : '–'}</td>
      <td>{r.pair ?? '–'}</td>
      <td>{serverSaw}</td>
    </tr>
  );
}

export default function Diagnostics() {
  const [report, setReport] = useState<ConnectionReport>();
  const [running, setRunning] = useState(false);
  const run = (): void => {
    setRunning(true);
    void runConnectionTest().then((r) => {
      setReport(r);
      setRunning(false);
    });
  };
  useEffect(run, []);
  const setup = report?.setup;
  return (
    <main className="page diagnostics">
      <h1>Connection test</h1>
      <p id="verdict" role="status" className={`verdict ${report?.verdict.level ?? ''}`} data-level={report?.verdict.level ?? ''} aria-busy={running}>
        {running ? 'Testing HTTP, WebRTC over UDP and over TCP…' : report?.verdict.text}
      </p>
      <button type="button" onClick={run} disabled={running}>
        Run again
      </button>
      {report ? (
        <>
          <h2>From this browser</h2>
          {/* Focusable: on a phone the table scrolls sideways, and a keyboard user must be able to scroll it too. */}
          <div className="table-wrap" tabIndex={0} role="region" aria-label="Test results">
            <table id="results">
              <thead>
                <tr>
                  <th scope="col">Test</th>
                  <th scope="col">Result</th>
                  <th scope="col">Time to connect</th>
                  <th scope="col">Round trip</th>
                  <th scope="col">Pair (server side)</th>
                  <th scope="col">The server saw</th>
                </tr>
              </thead>
              <tbody>
                <tr data-transport="http" data-outcome={report.http.ok ? 'connected' : 'failed'}>
                  <th scope="row">HTTP{report.http.secure ? 'S' : ''}</th>
                  <td className={report.http.ok ? 'ok' : 'fail'}>{report.http.ok ? 'Connected' : 'Failed'}</td>
                  <td>–</td>
                  <td>{report.http.rttMs !== undefined ? `${report.http.rttMs} ms` : '–'}</td>
                  <td>{window.location.host}</td>
                  <td>–</td>
                </tr>
                <TransportRow label="WebRTC over UDP" r={report.udp} />
                <TransportRow label="WebRTC over TCP" r={report.tcp} />
              </tbody>
            </table>
          </div>
          <p>
            This browser offered {report.candidates.host} host, {report.candidates.srflx} server-reflexive and {report.candidates.relay} relay candidates
            ({report.candidates.tcp} over TCP{report.candidates.mdns > 0 ? `, ${report.candidates.mdns} hidden behind mDNS names` : ''}).
          </p>
        </>
      ) : null}
      {setup ? (
        <>
          <h2>Ports to open or forward to this server</h2>
          <div className="table-wrap" tabIndex={0} role="region" aria-label="Ports">
            <table id="ports">
              <thead>
                <tr>
                  <th scope="col">Port</th>
                  <th scope="col">Protocol</th>
                  <th scope="col">For</th>
                </tr>
              </thead>
              <tbody>
                <tr>
                  <td>{window.location.port || (window.location.protocol === 'https:' ? '443' : '80')}</td>
                  <td>TCP</td>
                  <td>Web pages, API, LL-HLS, WHIP/WHEP signaling{setup.https ? ' (HTTPS)' : ''}</td>
                </tr>
                <tr>
                  <td>
                    {setup.udpPorts.min}–{setup.udpPorts.max}
                  </td>
                  <td>UDP</td>
                  <td>WebRTC media (best: sub-second, copes with loss)</td>
                </tr>
                {setup.tcpPort ? (
                  <tr>
                    <td>{setup.tcpPort}</td>
                    <td>TCP</td>
                    <td>WebRTC media when UDP is blocked</td>
                  </tr>
                ) : null}
              </tbody>
            </table>
          </div>
          {setup.publicAddresses.length > 0 ? <p>Announced public addresses: {setup.publicAddresses.join(', ')}.</p> : null}
        </>
      ) : null}
    </main>
  );
}

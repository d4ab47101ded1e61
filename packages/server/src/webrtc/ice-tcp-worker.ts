/**
 * The worker thread of WebRTC over TCP: runs the ICE-TCP relay (ice-tcp-relay.ts) and speaks with its owner
 * (ice-tcp.ts) in messages: `listen`, `register`, `unregister` in; `listening`, `listen-failed`, `connection`,
 * `closed`, `refused`, `warn` out. It ends when its owner terminates it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IceTcpRelay } from './ice-tcp-relay.js';
import type { IceTcpIn, IceTcpOut } from './ice-tcp.js';

const port = parentPort!;
const post = (m: IceTcpOut): void => port.postMessage(m);
const relay = new IceTcpRelay(workerData as { host: string; port: number }, {
  connection: (ufrag, connection) => post({ type: 'connection', ufrag, connection }),
  closed: (bridgePort) => post({ type: 'closed', bridgePort }),
  refused: (remote, why) => post({ type: 'refused', remote, why }),
  warn: (message, err) => post({ type: 'warn', message, err }),
});

port.on('message', (m: IceTcpIn) => {
  switch (m.type) {
    case 'listen':
      relay.listen().then(
        (bound) => post({ type: 'listening', port: bound }),
        (err: NodeJS.ErrnoException) => post({ type: 'listen-failed', message: err.message, code: err.code }),
      );
      break;
    case 'register':
      relay.register(m.ufrag, m.target);
      break;
    case 'unregister':
      relay.unregister(m.ufrag);
      break;
  }
});

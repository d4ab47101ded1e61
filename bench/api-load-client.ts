/**
 * REST API load for benchmarks: `rate` requests a second for `seconds` against `base` (a mix of the public list and
 * status, an admin's stats, sessions and history, and Prometheus scrapes), at most 400 in flight; prints
 * `{"sent","ok","failed"}` as JSON when done. Runs as its own process (niced by the caller) standing for clients
 * on other machines. Usage: node --import tsx bench/api-load-client.ts <base> <rate> <seconds> [apiToken]
 */
const [base, rateText, secondsText, token] = process.argv.slice(2);
const rate = Number(rateText);
const seconds = Number(secondsText);
const auth = token ? { authorization: `Bearer ${token}` } : undefined;
const paths: [string, Record<string, string> | undefined][] = [
  ['/api/v1/streams', undefined],
  ['/api/v1/streams/bench', undefined],
  ['/api/v1/streams/bench/stats', auth],
  ['/api/v1/streams/bench/sessions', auth],
  ['/api/v1/history?limit=20', auth],
  ['/metrics', auth],
];
const counts = { sent: 0, ok: 0, failed: 0 };
let inFlight = 0;
let i = 0;
const start = Date.now();
const timer = setInterval(() => {
  // Keep the total sent on the schedule (catching up after a late tick), bounded in flight.
  const due = Math.floor(((Date.now() - start) * rate) / 1000);
  while (counts.sent < due && inFlight < 400) {
    const [path, headers] = paths[i++ % paths.length]!;
    counts.sent++;
    inFlight++;
    void fetch(`${base}${path}`, { headers })
      .then(async (r) => {
        await r.arrayBuffer();
        if (r.ok) counts.ok++;
        else counts.failed++;
      })
      .catch(() => counts.failed++)
      .finally(() => inFlight--);
  }
  if (Date.now() - start >= seconds * 1000) {
    clearInterval(timer);
    setTimeout(() => process.stdout.write(JSON.stringify(counts) + '\n'), 1000);
  }
}, 20);

/** Pieces the admin pages share: an error line for a failed query or action, and an action runner. */
import { useState } from 'react';
import { ApiError } from '../../api.js';

/** A sentence for an error from the API. */
export function explain(err: unknown): string {
  if (err instanceof ApiError) return err.status === 403 ? `This API key may not do that (${err.message}).` : err.message;
  return (err as Error)?.message ?? String(err);
}

/** The error of a query or action, if any, as an alert. */
export function ErrorLine({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p className="status error" role="alert">
      {explain(error)}
    </p>
  );
}

/** Runs an async action, keeping its error for display; `busy` while it runs. */
export function useAction(): { run: (fn: () => Promise<unknown>) => Promise<void>; error: unknown; busy: boolean } {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const run = async (fn: () => Promise<unknown>): Promise<void> => {
    setBusy(true);
    setError(undefined);
    try {
      await fn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return { run, error, busy };
}

/** Pieces the admin pages share: an error line, an action runner, a table, a button that asks first. */
import { useState, type ReactNode } from 'react';
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

/** A table that scrolls sideways on a phone; `columns` are the header cells, '' an actions column (named for screen readers). */
export function Table({ columns, id, className, webhook, children }: { columns: string[]; id?: string; className?: string; webhook?: string; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table id={id} className={className} data-webhook={webhook}>
        <thead>
          <tr>
            {columns.map((c, i) => (
              <th scope="col" key={i}>
                {c || <span className="visually-hidden">Actions</span>}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

/** A destructive button: asks `question` first, then runs `onConfirm`. */
export function ConfirmButton({ label, question, onConfirm, disabled, small = true }: { label: string; question: string; onConfirm: () => void; disabled?: boolean; small?: boolean }) {
  return (
    <button
      type="button"
      className={small ? 'small danger' : 'danger'}
      disabled={disabled}
      onClick={() => {
        if (window.confirm(question)) onConfirm();
      }}
    >
      {label}
    </button>
  );
}

/** Process figures from /proc (Linux), for tests and benchmarks. */
import { readFileSync, readdirSync } from 'node:fs';

/** Fields of /proc/<pid>/stat after the command name (field 3 onward). */
function statFields(pid: number): string[] {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
}

/** CPU time of process `pid` so far (user + system), in clock ticks (1/100 s); 0 once it has ended. */
export function cpuTicks(pid: number): number {
  try {
    const fields = statFields(pid);
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** The child processes of `pid` now. */
export function childProcesses(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(Number(entry))[1]) === pid) out.push(Number(entry));
    } catch {
      // ended while we looked
    }
  }
  return out;
}

import { readdirSync, readFileSync } from 'node:fs';

/** One process of the host, as /proc shows it. */
export interface HostProcess {
  pid: number;
  ppid: number;
  /** The one-letter state: R, S, D, Z (zombie), … */
  state: string;
  /** The command line, arguments joined by spaces. */
  args: string;
}

/** Every process of the host (those that exit while /proc is read are left out). */
export function hostProcesses(): HostProcess[] {
  const processes: HostProcess[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses, so split after the last ")".
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      processes.push({ pid: Number(name), ppid: Number(ppid), state: state!, args });
    } catch {
      // gone meanwhile
    }
  }
  return processes;
}

/**
 * The live (not zombie) processes of one Airlock's sandboxes: each bubblewrap process whose command
 * line binds a workspace under `dataDir`, and everything below it. Other Airlocks on the machine
 * (other tests, other checkouts) never match.
 */
export function sandboxProcesses(dataDir: string): HostProcess[] {
  const all = hostProcesses().filter((p) => p.state !== 'Z');
  const marker = `${dataDir}/workspaces/`;
  const found = all.filter((p) => /(^|\/)bwrap /.test(p.args) && p.args.includes(marker));
  for (let i = 0; i < found.length; i++) {
    for (const child of all) if (child.ppid === found[i]!.pid && !found.includes(child)) found.push(child);
  }
  return found;
}

/** Whether a process with this PID exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

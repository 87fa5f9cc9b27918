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
 * The live (not zombie) processes of one Airlock's sandboxes: each bubblewrap process whose mount
 * namespace shows a workspace under `dataDir` at /workspace, the bubblewrap that started it, and
 * everything below them. Other Airlocks on the machine (other tests, other checkouts) never match.
 * (No command line names the workspace: bubblewrap reads its options from a file descriptor.)
 */
export function sandboxProcesses(dataDir: string): HostProcess[] {
  return sandboxProcessesOf((workspace) => workspace.startsWith(`${dataDir}/workspaces/`));
}

/** The live processes of the sandboxes whose host workspace directory `matches`, as sandboxProcesses finds them. */
export function sandboxProcessesOf(matches: (workspaceDir: string) => boolean): HostProcess[] {
  const all = hostProcesses().filter((p) => p.state !== 'Z');
  const bwraps = all.filter((p) => /(^|\/)bwrap /.test(p.args));
  const found = bwraps.filter((p) => {
    const workspace = workspaceOf(p.pid);
    return workspace !== undefined && matches(workspace);
  });
  for (const p of [...found]) {
    const parent = bwraps.find((other) => other.pid === p.ppid);
    if (parent && !found.includes(parent)) found.push(parent);
  }
  for (let i = 0; i < found.length; i++) {
    for (const child of all) if (child.ppid === found[i]!.pid && !found.includes(child)) found.push(child);
  }
  return found;
}

/**
 * The host directory a process sees at /workspace: the backing file of its loop device (without
 * `.img`) for a workspace volume, else the bind's source (a path on the root filesystem).
 */
export function workspaceOf(pid: number): string | undefined {
  let mountinfo: string;
  try {
    mountinfo = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    const fields = left?.split(' ') ?? [];
    if (fields[4] !== '/workspace' || !right) continue;
    const source = right.split(' ')[1] ?? '';
    const loop = /^\/dev\/(loop\d+)$/.exec(source);
    if (!loop) return fields[3];
    try {
      return readFileSync(`/sys/block/${loop[1]}/loop/backing_file`, 'utf8').trim().replace(/\.img$/, '');
    } catch {
      return undefined;
    }
  }
  return undefined;
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

import { accessSync, constants } from 'node:fs';
import { chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError } from '../config.js';
import type { NetworkPolicy, SandboxConfig } from '../config.js';
import { BwrapSandbox } from './bwrap.js';
import type { SandboxUser } from './bwrap.js';
import { SandboxLayouts } from './bwrapLayout.js';
import { CgroupV1Limits } from './cgroupLimits.js';
import type { ProcessSandbox } from './processSandbox.js';
import { Unsandboxed } from './processSandbox.js';
import type { SandboxedSpawn } from './processSandbox.js';
import { spawnSandboxed } from './spawnSandboxed.js';

const PROBE_TIMEOUT_MS = 10_000;
const MIB = 1024 * 1024;

/** The sandbox the tasks of this process get, decided once at start-up. */
export interface SandboxSetup {
  sandbox: ProcessSandbox;
  /** How task processes run: in bubblewrap, or as they are (`none`, or `auto` without a working bubblewrap). */
  mode: 'bwrap' | 'none';
  /**
   * Runs the start-up probe again, as readiness checks do: why the sandbox no longer works, or
   * undefined. Present under `bwrap`: there is nothing to probe without a sandbox.
   */
  probe?: () => Promise<string | undefined>;
  /**
   * What is missing from the isolation the configuration asked for, said on the first `status`
   * event of every run of a task that starts processes; absent when nothing is missing.
   */
  taskWarning?: string;
  /** The host user that must own what sandboxed processes write (their workspaces); absent: Airlock's own. */
  owner?: { uid: number; gid: number };
}

/**
 * Decides the sandbox from `sandbox.mode`: `none` runs processes as they are; `auto` and `bwrap`
 * probe bubblewrap once, running `true` with the exact options tasks get (under each network
 * policy a project uses, within the cgroup limits that can be applied). A failed probe falls back
 * to no sandbox, loudly, under `auto`, and stops start-up (a ConfigError) under `bwrap`.
 */
export async function startSandbox(
  config: SandboxConfig,
  context: { dataDir: string; configPath?: string; logger: Logger; /** The network policies projects use: only these are probed. */ networks: ReadonlySet<NetworkPolicy> },
): Promise<SandboxSetup> {
  const { logger } = context;
  if (config.mode === 'none') {
    logger.info({ sandbox: 'none' }, 'sandbox.mode is "none": task processes run unsandboxed, as Airlock\'s user');
    return { sandbox: new Unsandboxed(), mode: 'none' };
  }

  const limits = { memoryBytes: config.memoryLimitMb * MIB, maxProcesses: config.maxProcesses };
  const cgroups = limits.memoryBytes > 0 || limits.maxProcesses > 0 ? CgroupV1Limits.open(limits) : undefined;
  const opened = await openBwrap(config, context, cgroups?.cgroups);
  if (!opened.ok) {
    const reason = `bubblewrap (${config.bwrapPath}) does not work here: ${opened.reason}`;
    if (config.mode === 'bwrap') throw new ConfigError([`sandbox.mode is "bwrap", but ${reason}`]);
    logger.warn({ sandbox: 'none', reason }, `TASK PROCESSES ARE NOT SANDBOXED: ${reason}. The built-in tools and stdio MCP servers run as Airlock's user and can read and write what it can. Install bubblewrap, or set sandbox.mode to "bwrap" to refuse to start without it, or to "none" to accept this`);
    return {
      sandbox: new Unsandboxed(),
      mode: 'none',
      taskWarning: `This task's processes are not sandboxed: ${reason}. They run as Airlock's user, see its files and the network.`,
    };
  }

  const { user } = opened.sandbox;
  const runsAs = user ? { uid: user.uid, gid: user.gid } : { uid: process.getuid?.(), gid: process.getgid?.() };
  logger.info({ sandbox: 'bwrap', bwrap: opened.path, ...runsAs, memoryLimitMb: config.memoryLimitMb, maxProcesses: config.maxProcesses }, 'task processes run in bubblewrap sandboxes');
  const owner = user ? { owner: { uid: user.uid, gid: user.gid } } : {};
  const working = { sandbox: opened.sandbox, mode: 'bwrap' as const, probe: () => probe(opened.sandbox, context.dataDir, context.networks), ...owner };
  if (!cgroups?.unapplied.length) return working;
  const unapplied = describeUnapplied(config, cgroups.unapplied);
  logger.warn(`sandbox limits: ${unapplied}`);
  return { ...working, taskWarning: `Sandbox limits: ${unapplied}. Time and output limits still apply.` };
}

/** The bubblewrap sandbox, once its probe has passed; or why it cannot be used. */
async function openBwrap(
  config: SandboxConfig, context: { dataDir: string; configPath?: string; networks: ReadonlySet<NetworkPolicy> }, cgroups: CgroupV1Limits | undefined,
): Promise<{ ok: true; sandbox: BwrapSandbox; path: string } | { ok: false; reason: string }> {
  const program = findProgram(config.bwrapPath);
  if (!program.ok) return program;
  // Run by root, the sandbox drops to an unprivileged user between its two stages (setpriv).
  let user: SandboxUser | undefined;
  if (process.getuid?.() === 0) {
    const setpriv = findProgram('setpriv', SYSTEM_PATH);
    if (!setpriv.ok) return { ok: false, reason: 'Airlock runs as root, and running sandboxed processes as an unprivileged user needs util-linux\'s setpriv, which is not installed' };
    user = { uid: config.uid, gid: config.gid, setpriv: setpriv.path };
  }
  // It must exist to be hidden: a data directory made later under a visible path would show.
  await mkdir(context.dataDir, { recursive: true });
  // The inner stage runs bubblewrap (and setpriv) from inside the outer one: they must be shown.
  const programs = [program.path, ...(user ? [user.setpriv] : [])];
  const layouts = SandboxLayouts.forHost({ dataDir: context.dataDir, configPath: context.configPath, readOnlyPaths: [...config.readOnlyPaths, ...programs] });
  const sandbox = new BwrapSandbox(program.path, layouts, cgroups, user);
  const failure = await probe(sandbox, context.dataDir, context.networks);
  return failure === undefined ? { ok: true, sandbox, path: program.path } : { ok: false, reason: failure };
}

/** E.g. `the process limit (512) could not be applied: no cgroup v1 "pids" hierarchy is mounted`. */
function describeUnapplied(config: SandboxConfig, unapplied: Array<{ limit: 'memory' | 'pids'; reason: string }>): string {
  return unapplied
    .map(({ limit, reason }) => `${limit === 'memory' ? `the memory limit (${config.memoryLimitMb} MiB)` : `the process limit (${config.maxProcesses})`} could not be applied: ${reason}`)
    .join('; ');
}

/** Where system programs are looked for besides Airlock's PATH. */
const SYSTEM_PATH = '/usr/bin:/bin:/usr/sbin:/sbin';

/** The program's absolute path: as given when it is a path, else from Airlock's PATH (then `extraPath`). */
function findProgram(program: string, extraPath = ''): { ok: true; path: string } | { ok: false; reason: string } {
  const path = [process.env.PATH ?? '', extraPath].join(delimiter);
  const candidates = program.includes('/') ? [program] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return { ok: true, path: candidate };
    } catch {
      // the next one
    }
  }
  return { ok: false, reason: program.includes('/') ? `${candidates[0]} is not an executable file` : `"${program}" is not in PATH` };
}

/** Runs `true` in the sandbox under each network policy; the reason it failed, or undefined. */
async function probe(sandbox: BwrapSandbox, dataDir: string, networks: ReadonlySet<NetworkPolicy>): Promise<string | undefined> {
  const workspaceDir = await mkdtemp(join(dataDir, '.sandbox-probe-'));
  try {
    if (sandbox.user) await chown(workspaceDir, sandbox.user.uid, sandbox.user.gid);
    for (const network of networks) {
      let launch;
      try {
        launch = await sandbox.prepare({ command: 'true', args: [], env: { PATH: '/usr/bin:/bin' }, workspaceDir, cwd: workspaceDir, network });
      } catch (err) {
        return (err as Error).message;
      }
      try {
        const failure = await runToEnd(launch);
        if (failure) return network === 'deny' ? `${failure} (with network "deny")` : failure;
      } finally {
        launch.release();
      }
    }
    return undefined;
  } finally {
    await rm(workspaceDir, { recursive: true, force: true });
  }
}

/** Runs a prepared command to its end; why it failed (its last stderr line, exit status, spawn error), or undefined. */
function runToEnd(launch: SandboxedSpawn): Promise<string | undefined> {
  return new Promise((done) => {
    const child = spawnSandboxed(launch, ['ignore', 'ignore', 'pipe']);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2_000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      done(err.message);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return done(undefined);
      const lastLine = stderr.trim().split('\n').at(-1);
      done(lastLine || (signal ? `ended by ${signal}` : `exit status ${code}`));
    });
  });
}

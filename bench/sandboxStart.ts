// What the hardened sandbox costs per process and per workspace, beside the simplest equivalent
// measured in the same run: a sandboxed `true` through Airlock's two bubblewrap stages (options
// through file descriptors, setpriv to the sandbox user as root) against one bubblewrap run with
// the same mounts from its command line; a workspace volume (sparse image, mkfs.ext4, mount)
// against a plain directory. Wall time per operation; the two launches alternate round by round,
// so the machine's other work weighs on both alike.
import { chownSync, mkdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BwrapSandbox, HOST_ENV } from '../src/sandbox/bwrap.js';
import { SandboxLayouts } from '../src/sandbox/bwrapLayout.js';
import type { SandboxedSpawn } from '../src/sandbox/processSandbox.js';
import { spawnSandboxed } from '../src/sandbox/spawnSandboxed.js';
import { openWorkspaces } from '../src/sandbox/workspaces.js';
import { fmt, printMachine, printTable, summarize, withTempDir } from './lib.js';

const ROUNDS = 40;
const SANDBOX_USER = { uid: 61000, gid: 61000, setpriv: '/usr/bin/setpriv' };

function run(launch: SandboxedSpawn): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawnSandboxed(launch, ['ignore', 'ignore', 'pipe']);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}: ${stderr}`))));
  });
}

async function timed(label: string, rounds: number, op: (round: number) => Promise<void>): Promise<{ label: string; wall: number[] }> {
  const wall: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    await op(round);
    wall.push(performance.now() - start);
  }
  return { label, wall };
}

if (process.getuid?.() !== 0) {
  console.log('sandbox-start: needs root (the sandbox user switch and workspace volumes are root-only); skipped');
  process.exit(0);
}
printMachine();
await withTempDir('airlock-bench-sandbox-', async (dir) => {
  const dataDir = join(dir, 'data');
  const workspace = join(dataDir, 'ws');
  mkdirSync(workspace, { recursive: true });
  chownSync(workspace, SANDBOX_USER.uid, SANDBOX_USER.gid);
  const layouts = SandboxLayouts.forHost({ dataDir, readOnlyPaths: ['/usr/bin/bwrap', SANDBOX_USER.setpriv] });
  const sandbox = new BwrapSandbox('/usr/bin/bwrap', layouts, undefined, SANDBOX_USER);
  const request = { command: '/bin/true', args: [], env: { PATH: '/usr/bin:/bin', HOME: '/workspace', TOKEN: 'x'.repeat(64) }, workspaceDir: workspace, cwd: workspace, network: 'allow' as const };
  // The baseline: one stage, every option on the command line, the environment passed through.
  const stages = await sandbox.prepare(request);
  const outer = stages.fdInputs![0]!.toString().split('\0').filter(Boolean);
  const single: SandboxedSpawn = {
    command: '/usr/bin/bwrap', args: [...outer, '--unshare-user', '--cap-drop', 'ALL', '--', '/bin/true'],
    env: { ...HOST_ENV, ...request.env }, cwd: '/', release: () => {},
  };
  const alternate: Array<{ label: string; wall: number[] }> = [{ label: 'one bwrap stage, options in argv (baseline)', wall: [] }, { label: 'Airlock: two stages, --args fds, setpriv', wall: [] }];
  for (let round = 0; round < ROUNDS; round++) {
    for (const [index, launch] of [single, await sandbox.prepare(request)].entries()) {
      const start = performance.now();
      await run(launch);
      alternate[index]!.wall.push(performance.now() - start);
    }
  }
  const opened = await openWorkspaces(join(dataDir, 'workspaces'), 1024, SANDBOX_USER);
  if (opened.warning) throw new Error(opened.warning);
  const ids = (prefix: string, n: number) => `${prefix}${String(n).padStart(7, '0')}-0000-4000-8000-000000000000`;
  const plain = await timed('workspace as a plain directory (baseline)', ROUNDS, (n) => mkdir(join(dataDir, 'plain', ids('0', n), 'uploads'), { recursive: true }).then(() => undefined));
  const volume = await timed('workspace volume of 1024 MiB: image, mkfs, mount', ROUNDS, (n) => opened.workspaces.ensure(ids('1', n)).then(() => undefined));
  await opened.workspaces.close();
  const rows = [['operation', 'median ms', 'p95 ms']];
  for (const { label, wall } of [...alternate, plain, volume]) {
    const { median, p95 } = summarize(wall);
    rows.push([label, fmt(median, 2), fmt(p95, 2)]);
  }
  console.log(`\nsandbox start and workspace set-up, ${ROUNDS} rounds each (the two launches alternate)`);
  printTable(rows);
  const ratio = summarize(alternate[1]!.wall).median / summarize(alternate[0]!.wall).median;
  console.log(`  two stages / one stage: ${fmt(ratio, 2)}x (no goal; the price of the hardening)`);
});

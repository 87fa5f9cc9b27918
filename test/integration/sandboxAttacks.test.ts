import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestAirlock, waitFor } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { script } from '../support/mcpHarness.js';
import { sandboxProcesses } from '../support/processTree.js';

const SANDBOX_UID = 61000;
const runsAsRoot = process.getuid?.() === 0;

/** Runs a task (or a follow-up of `taskId`) to its end; the task. */
async function finish(airlock: TestAirlock, id: string): Promise<any> {
  return waitFor(async () => {
    const { body } = await airlock.api(`/tasks/${id}`);
    return ['completed', 'failed'].includes(body?.data?.status) && !body.data.pendingApprovals ? body.data : undefined;
  }, `task ${id} to finish`, 60_000);
}

async function shell(airlock: TestAirlock, command: string, extra: Record<string, unknown> = {}): Promise<{ task: any; output: string }> {
  const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['run_shell_command', { command }]), ...extra } });
  expect(res.status, res.text).to.equal(201);
  const task = await finish(airlock, res.body.data.id);
  expect(task.status, JSON.stringify(task.error)).to.equal('completed');
  return { task, output: task.output.toolCalls[0].output };
}

/** A shared object whose constructor appends its uid and mount namespace to `hostMarker` and to /workspace/preload.log. */
function buildPreloadLibrary(dir: string, hostMarker: string): string {
  const source = join(dir, 'preload.c');
  writeFileSync(source, `
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void ran(void) {
  char ns[128] = {0};
  if (readlink("/proc/self/ns/mnt", ns, sizeof ns - 1) < 0) ns[0] = '?';
  const char *paths[] = { "${hostMarker}", "/workspace/preload.log" };
  for (int i = 0; i < 2; i++) {
    FILE *f = fopen(paths[i], "a");
    if (f) { fprintf(f, "uid=%d mnt=%s\\n", (int) getuid(), ns); fclose(f); }
  }
}
`);
  const library = join(dir, 'preload.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-o', library, source]);
  return library;
}

describe('The sandbox against the people who create tasks', function () {
  this.timeout(180_000);
  let airlock: TestAirlock;
  let scratch: string;

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'airlock-attack-'));
    chmodSync(scratch, 0o1777);
    airlock = await startTestAirlock({ config: { sandbox: { workspaceLimitMb: 64 } } });
  });

  after(async () => {
    await airlock?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('LD_PRELOAD in a task\'s env never runs on the host: not with the upload\'s host path, and inside only as the sandbox\'s user', async () => {
    const hostMarker = join(scratch, 'ran-on-host');
    const library = buildPreloadLibrary(scratch, hostMarker);
    const form = new FormData();
    form.append('message', '/reply uploaded');
    form.append('files', new Blob([readFileSync(library)]), 'x.so');
    const created = await airlock.api('/tasks', { method: 'POST', body: form });
    expect(created.status, created.text).to.equal(201);
    const id = created.body.data.id;
    await finish(airlock, id);
    const hostPath = join(airlock.dataDir, 'workspaces', id, 'uploads', 'x.so');
    expect(existsSync(hostPath)).to.equal(true);
    // The attack of the review: the host path, where a host process's loader would find the file.
    for (const preload of [hostPath, '/workspace/uploads/x.so']) {
      const res = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: script(['run_shell_command', { command: 'echo started' }]), env: { LD_PRELOAD: preload } } });
      expect(res.status, res.text).to.equal(200);
      const task = await finish(airlock, id);
      expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    }
    expect(existsSync(hostMarker), 'the library ran on the host').to.equal(false);
    // It did run inside, where the task's variables belong, as the sandbox's user.
    const inside = readFileSync(join(airlock.dataDir, 'workspaces', id, 'preload.log'), 'utf8');
    const hostNamespace = execFileSync('readlink', ['/proc/self/ns/mnt']).toString().trim();
    expect(inside).to.match(/uid=\d+ mnt=mnt:\[\d+\]/);
    expect(inside).to.not.include(hostNamespace);
    if (runsAsRoot) expect(inside).to.not.match(/uid=0 /);
  });

  it('cannot write /proc/sys, and runs as an unprivileged host user (checked from the host)', async function () {
    const before = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
    try {
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['run_shell_command', {
        command: 'cat /proc/self/uid_map; awk \'$5 == "/proc/sys" { print "sysctl mount: " $6 }\' /proc/self/mountinfo; echo "|/tmp/pwn %p" > /proc/sys/kernel/core_pattern; echo "written=$?"; sleep 304.25',
        timeoutMs: 30_000,
      }]) } });
      const sleeper = await waitFor(() => sandboxProcesses(airlock.dataDir).find((p) => p.args === 'sleep 304.25'), 'the command to run', 30_000);
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${sleeper.pid}/status`, 'utf8'))![1]);
      process.kill(sleeper.pid, 'SIGKILL');
      const task = await finish(airlock, res.body.data.id);
      const output = task.output.toolCalls[0].output;
      expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8')).to.equal(before);
      expect(output).to.include('Read-only file system').and.not.include('written=0');
      expect(output).to.match(/^sysctl mount: ro,/m);
      expect(output).to.not.match(/^\s*0\s+0\s+1$/m);
      expect(uid).to.equal(runsAsRoot ? SANDBOX_UID : process.getuid!());
    } finally {
      // Should the write ever get through, the host gets its setting back.
      if (readFileSync('/proc/sys/kernel/core_pattern', 'utf8') !== before) writeFileSync('/proc/sys/kernel/core_pattern', before);
    }
  });

  it('cannot learn the data directory\'s host path from any command line or mount', async () => {
    const { output } = await shell(airlock, 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline; echo; done; cat /proc/self/mountinfo /proc/1/mountinfo; cat /proc/1/environ 2>/dev/null | tr "\\0" "\\n"');
    expect(output).to.include('bwrap --args 3');
    expect(output).to.include(' /workspace ');
    expect(output).to.not.include(airlock.dataDir);
  });

  it('stops a workspace at its disk limit with ENOSPC inside, and the task goes on', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(
      ['run_shell_command', { command: 'dd if=/dev/zero of=big bs=1M count=200 2>&1 | grep -v records; ls -l big' }],
      ['run_shell_command', { command: 'rm big; echo still-here > small.txt; cat small.txt' }],
    ) } });
    const task = await finish(airlock, res.body.data.id);
    expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    const [fill, after] = task.output.toolCalls;
    expect(fill.output).to.include('No space left on device');
    const written = Number(/-rw\S* +\d+ +\S+ +\S+ +(\d+)/.exec(fill.output)![1]);
    expect(written).to.be.above(32 * 1024 * 1024).and.at.most(64 * 1024 * 1024);
    expect(after.output).to.include('still-here');
    // On the host the volume takes no more than its size.
    const image = join(airlock.dataDir, 'workspaces', `${task.id}.img`);
    expect(statSync(image).blocks * 512).to.be.at.most(64 * 1024 * 1024);
  });

  it('counts uploads against the same limit: a follow-up whose files do not fit is refused and saves nothing', async () => {
    const upload = (message: string, bytes: number) => {
      const form = new FormData();
      form.append('message', message);
      form.append('files', new Blob([Buffer.alloc(bytes, 7)]), 'part.bin');
      return form;
    };
    const created = await airlock.api('/tasks', { method: 'POST', body: upload('/reply one', 40 * 1024 * 1024) });
    expect(created.status, created.text).to.equal(201);
    const id = created.body.data.id;
    await finish(airlock, id);
    const refused = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', body: upload('/reply two', 40 * 1024 * 1024) });
    expect(refused.status).to.equal(413);
    expect(refused.body.error.code).to.equal('PAYLOAD_TOO_LARGE');
    expect(refused.body.error.message).to.include('at most 64 MiB');
    const { body } = await airlock.api(`/tasks/${id}/artifacts`);
    expect(body.data.files.map((file: { path: string }) => file.path)).to.deep.equal(['uploads/part.bin']);
  });
});

import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Uploads } from '../../src/sandbox/uploads.js';
import { openWorkspaces } from '../../src/sandbox/workspaces.js';
import type { Workspaces } from '../../src/sandbox/workspaces.js';
import { WorkspaceVolumes } from '../../src/sandbox/workspaceVolumes.js';
import { removeDataDir } from '../support/removeDataDir.js';

const TASK = '0b7c0adf-1d33-483e-b605-7cbeae0ea1f5';
const OWNER = { uid: 61000, gid: 61000 };
const MIB = 1024 * 1024;

function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === dir);
}

/** Staged uploads of one file of `bytes` bytes. */
async function staged(dir: string, bytes: number) {
  const receiver = await new Uploads(join(dir, 'tmp'), { maxFiles: 20, maxFileBytes: 100 * MIB, archives: { maxExpandedBytes: 100 * MIB, maxEntries: 100, maxCompressionRatio: 100 } }).receive();
  const writer = receiver.openFile('data.bin');
  writer.end(Buffer.alloc(bytes, 1));
  await once(writer, 'close');
  return (await receiver.stage())!;
}

describe('Workspace volumes', function () {
  this.timeout(60_000);
  let dir: string;
  let workspaces: Workspaces | undefined;

  beforeEach(function () {
    if (process.getuid?.() !== 0) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'airlock-volumes-'));
  });
  afterEach(async () => {
    await workspaces?.close();
    workspaces = undefined;
    if (dir) await removeDataDir(dir);
  });

  it('makes each workspace a filesystem of the limit\'s size, owned by the sandbox\'s user, and unmounts it at close', async () => {
    const opened = await openWorkspaces(join(dir, 'workspaces'), 32, OWNER);
    expect(opened.warning).to.equal(undefined);
    workspaces = opened.workspaces;
    const ws = await workspaces.ensure(TASK);
    expect(isMounted(ws)).to.equal(true);
    expect(statSync(ws).uid).to.equal(OWNER.uid);
    expect(statSync(join(ws, 'uploads')).uid).to.equal(OWNER.uid);
    expect(existsSync(join(ws, 'lost+found'))).to.equal(false);
    const df = execFileSync('df', ['-B1', '--output=size', ws]).toString().trim().split('\n')[1]!;
    expect(Number(df)).to.be.above(28 * MIB).and.at.most(32 * MIB);
    await workspaces.close();
    workspaces = undefined;
    expect(isMounted(ws)).to.equal(false);
    expect(existsSync(WorkspaceVolumes.imageOf(ws))).to.equal(true);
  });

  it('mounts a workspace again for reading, keeping its files, and removes the volume with the workspace', async () => {
    workspaces = (await openWorkspaces(join(dir, 'workspaces'), 32, OWNER)).workspaces;
    const ws = await workspaces.ensure(TASK);
    writeFileSync(join(ws, 'kept.txt'), 'kept');
    execFileSync('umount', [ws]);
    expect(await workspaces.usage(TASK)).to.equal(4);
    expect(isMounted(ws)).to.equal(true);
    expect(readFileSync(join(await workspaces.open(TASK), 'kept.txt'), 'utf8')).to.equal('kept');
    await workspaces.remove(TASK);
    expect(isMounted(ws)).to.equal(false);
    expect(existsSync(ws)).to.equal(false);
    expect(existsSync(WorkspaceVolumes.imageOf(ws))).to.equal(false);
  });

  it('refuses uploads that do not fit, and moves in (across filesystems) those that do, owned by the sandbox\'s user', async () => {
    workspaces = (await openWorkspaces(join(dir, 'workspaces'), 16, OWNER)).workspaces;
    const adopted = await workspaces.adopt(TASK, await staged(dir, 4 * MIB));
    expect(adopted.attachedFiles).to.deep.equal([{ name: 'data.bin', path: 'uploads/data.bin' }]);
    const file = join(workspaces.dir(TASK), 'uploads', 'data.bin');
    expect(statSync(file).size).to.equal(4 * MIB);
    expect(statSync(file).uid).to.equal(OWNER.uid);
    const refusal = await workspaces.adopt(TASK, await staged(dir, 13 * MIB)).then(() => undefined, (err: Error & { code?: string }) => err);
    expect(refusal?.code).to.equal('PAYLOAD_TOO_LARGE');
    expect(refusal?.message).to.include('at most 16 MiB');
    expect((await workspaces.open(TASK).then((ws) => execFileSync('ls', [join(ws, 'uploads')]).toString())).trim()).to.equal('data.bin');
  });

  it('says why the limit cannot be enforced when volumes cannot be made, and still holds uploads to it', async () => {
    const opened = await openWorkspaces(join(dir, 'workspaces'), 16, OWNER, { mkfs: '/bin/false' });
    workspaces = opened.workspaces;
    expect(opened.warning).to.match(/^the workspace disk limit \(16 MiB\) cannot be enforced here: .+; only uploads are held to it$/);
    const ws = await workspaces.ensure(TASK);
    expect(isMounted(ws)).to.equal(false);
    expect(statSync(ws).uid).to.equal(OWNER.uid);
    const refusal = await workspaces.adopt(TASK, await staged(dir, 17 * MIB)).then(() => undefined, (err: Error & { code?: string }) => err);
    expect(refusal?.code).to.equal('PAYLOAD_TOO_LARGE');
  });

  it('adopts the volumes a killed process left mounted, and unmounts them', async () => {
    const first = (await openWorkspaces(join(dir, 'workspaces'), 16, OWNER)).workspaces;
    const ws = await first.ensure(TASK);
    // No close(): as if the process had been killed.
    workspaces = (await openWorkspaces(join(dir, 'workspaces'), 16, OWNER)).workspaces;
    expect(isMounted(ws)).to.equal(true);
    await workspaces.close();
    workspaces = undefined;
    expect(isMounted(ws)).to.equal(false);
  });
});

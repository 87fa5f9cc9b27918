import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { expect } from 'chai';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { zipBuffer } from '../support/archiveWriters.js';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

function form(message: string, files: [string, string | Buffer][]): FormData {
  const body = new FormData();
  body.set('message', message);
  for (const [name, content] of files) body.append('files', new Blob([content]), name);
  return body;
}

/** Reads a raw response: status, headers and the body bytes. */
async function download(airlock: TestAirlock, path: string, key = airlock.key): Promise<{ status: number; headers: Headers; bytes: Buffer }> {
  const res = await fetch(`${airlock.url}/api/v1${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

describe('Artifacts (GET /tasks/:id/artifacts, /download, /archive)', function () {
  this.timeout(30_000);
  let airlock: TestAirlock;
  let otherKey: string;

  before(async () => {
    airlock = await startTestAirlock();
    otherKey = (await createApiKey(airlock.store, { projectId: 'other' })).key;
  });
  after(() => airlock.stop());

  const workspace = (id: string, ...path: string[]) => join(airlock.dataDir, 'workspaces', id, ...path);
  const list = (id: string, key?: string) => airlock.api(`/tasks/${id}/artifacts`, { key });
  const fileUrl = (id: string, path: string) => `/tasks/${id}/artifacts/download?path=${encodeURIComponent(path)}`;

  /** A completed task with the given uploads. */
  async function taskWith(files: [string, string | Buffer][], message = '/reply done'): Promise<string> {
    const res = await airlock.api('/tasks', { method: 'POST', body: form(message, files) });
    expect(res.status, res.text).to.equal(201);
    await waitForStatus(airlock, res.body.data.id, ['completed']);
    return res.body.data.id;
  }

  describe('the list', () => {
    it('lists every workspace file with name, path, size, mimeType, category and modifiedAt, sorted by path', async () => {
      const id = await taskWith([
        ['data.csv', 'a,b\n'], ['paper.pdf', '%PDF-1.4'], ['photo.PNG', 'png'], ['script.py', 'print(1)'], ['notes.txt', 'n'],
        ['letter.docx', 'd'], ['sheet.xlsx', 's'], ['pack.zip', zipBuffer([{ name: 'inner.md', content: '# x' }])], ['blob.bin', 'b'],
      ]);
      // What the agent's processes would write: a deliverable, and symlinks, which are not listed.
      await writeFile(workspace(id, 'downloads', 'result.json'), '{"ok":true}');
      await symlink('/etc/passwd', workspace(id, 'downloads', 'passwd-link'));
      await symlink(workspace(id, 'uploads'), workspace(id, 'uploads-link'));
      const res = await list(id);
      expect(res.status).to.equal(200);
      const files = res.body.data.files;
      expect(res.body.data).to.have.keys('files');
      expect(files.map((f: { path: string; category: string; mimeType: string }) => [f.path, f.category, f.mimeType])).to.deep.equal([
        ['downloads/result.json', 'code', 'application/json'],
        ['uploads/blob.bin', 'other', 'application/octet-stream'],
        ['uploads/data.csv', 'csv', 'text/csv'],
        ['uploads/letter.docx', 'document', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'],
        ['uploads/notes.txt', 'text', 'text/plain'],
        ['uploads/pack.zip', 'archive', 'application/zip'],
        ['uploads/pack/inner.md', 'text', 'text/markdown'],
        ['uploads/paper.pdf', 'pdf', 'application/pdf'],
        ['uploads/photo.PNG', 'image', 'image/png'],
        ['uploads/script.py', 'code', 'text/x-python'],
        ['uploads/sheet.xlsx', 'spreadsheet', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
      ]);
      expect(files[2]).to.include({ name: 'data.csv', size: 4 });
      expect(files[2].modifiedAt).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    it('shows a file whose name is a secret of the task scrubbed, in the list and the download\'s name', async () => {
      const secret = `tok${randomUUID().replaceAll('-', '')}`;
      const created = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply one', secrets: { API_TOKEN: secret } } });
      const id = created.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      const followed = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', body: form('/reply two', [[`${secret}.txt`, 'x']]) });
      expect(followed.status, followed.text).to.be.oneOf([200, 201, 202]);
      await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.status === 'completed' || undefined, 'the follow-up');
      const res = await list(id);
      expect(res.text).not.to.include(secret);
      const shown = res.body.data.files.find((f: { name: string }) => f.name.includes('[secret:API_TOKEN]'));
      expect(shown).to.include({ name: '[secret:API_TOKEN].txt', path: 'uploads/[secret:API_TOKEN].txt' });
      const file = await download(airlock, fileUrl(id, `uploads/${secret}.txt`));
      expect(file.status).to.equal(200);
      expect(file.headers.get('content-disposition')).not.to.include(secret);
    });

    it('reports the workspace size on GET /tasks/:id as workspaceBytes, and keeps it current', async () => {
      const id = await taskWith([['a.txt', 'x'.repeat(1000)], ['b.txt', 'y'.repeat(24)]]);
      expect((await airlock.api(`/tasks/${id}`)).body.data.workspaceBytes).to.equal(1024);
      await writeFile(workspace(id, 'downloads', 'out.txt'), 'z'.repeat(976));
      await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.workspaceBytes === 2000, 'workspaceBytes to count the new file');
      const json = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply no files' } });
      const task = await waitForStatus(airlock, json.body.data.id, ['completed']);
      expect(task.workspaceBytes).to.equal(0);
      expect((await airlock.api('/tasks?limit=1')).body.data[0], 'lists leave it out').to.not.have.property('workspaceBytes');
    });

    it('works in any status: running, cancelled, failed', async () => {
      const running = await airlock.api('/tasks', { method: 'POST', body: form('/delay 5000\n/reply slow', [['live.txt', 'live']]) });
      const id = running.body.data.id;
      await waitForStatus(airlock, id, ['running']);
      expect((await list(id)).body.data.files.map((f: { path: string }) => f.path)).to.deep.equal(['uploads/live.txt']);
      await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
      await waitForStatus(airlock, id, ['cancelled']);
      expect((await download(airlock, fileUrl(id, 'uploads/live.txt'))).bytes.toString()).to.equal('live');
      const failed = await airlock.api('/tasks', { method: 'POST', body: form('/fail on purpose', [['f.txt', 'f']]) });
      await waitForStatus(airlock, failed.body.data.id, ['failed']);
      expect((await list(failed.body.data.id)).body.data.files).to.have.length(1);
    });

    it('answers NOT_FOUND for another project\'s task on every artifacts route', async () => {
      const id = await taskWith([['secret-plan.txt', 'top secret']]);
      for (const path of [`/tasks/${id}/artifacts`, fileUrl(id, 'uploads/secret-plan.txt'), `/tasks/${id}/artifacts/archive`]) {
        const res = await airlock.api(path, { key: otherKey });
        expect(res.status, path).to.equal(404);
        expect(res.body.error.code).to.equal('NOT_FOUND');
        expect(res.text).to.not.include('top secret');
      }
    });
  });

  describe('download', () => {
    it('streams the file with its type, length, an attachment disposition and nosniff', async () => {
      const content = Buffer.from('id,name\n1,Ada\n'.repeat(5000));
      const id = await taskWith([['people.csv', content]]);
      const res = await download(airlock, fileUrl(id, 'uploads/people.csv'));
      expect(res.status).to.equal(200);
      expect(res.bytes.equals(content)).to.equal(true);
      expect(res.headers.get('content-type')).to.equal('text/csv');
      expect(res.headers.get('content-length')).to.equal(String(content.length));
      expect(res.headers.get('content-disposition')).to.equal('attachment; filename="people.csv"');
      expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
    });

    it('quotes a non-ASCII name with quotes safely: an ASCII fallback and filename* in UTF-8', async () => {
      const name = 'naïve "quoted" résumé 100%.txt';
      const id = await taskWith([[name, 'cv']]);
      const res = await download(airlock, fileUrl(id, `uploads/${name}`));
      expect(res.status).to.equal(200);
      const disposition = res.headers.get('content-disposition')!;
      expect(disposition).to.equal(`attachment; filename="na_ve _quoted_ r_sum_ 100_.txt"; filename*=UTF-8''na%C3%AFve%20%22quoted%22%20r%C3%A9sum%C3%A9%20100%25.txt`);
      expect(decodeURIComponent(/filename\*=UTF-8''(.+)$/.exec(disposition)![1]!)).to.equal(name);
    });

    it('refuses paths out of the workspace with NOT_FOUND: "..", absolute, and symlinks that lead outside', async () => {
      const id = await taskWith([['inside.txt', 'inside']]);
      await symlink(join(airlock.dataDir, 'airlock.db'), workspace(id, 'downloads', 'db-link'));
      await symlink(airlock.dataDir, workspace(id, 'data-dir'));
      await symlink(workspace(id, 'uploads', 'inside.txt'), workspace(id, 'downloads', 'inside-link.txt'));
      for (const path of ['../../airlock.db', 'uploads/../../../airlock.db', '/etc/passwd', workspace(id, 'uploads', 'inside.txt'), 'downloads/db-link', 'data-dir/airlock.db', 'uploads/nothing-here.txt', 'uploads/inside.txt/x']) {
        const res = await airlock.api(fileUrl(id, path));
        expect(res.status, path).to.equal(404);
        expect(res.body.error).to.deep.equal({ code: 'NOT_FOUND', message: 'No such file in the task workspace' });
      }
      // A symlink that stays inside the workspace is followed.
      expect((await download(airlock, fileUrl(id, 'downloads/inside-link.txt'))).bytes.toString()).to.equal('inside');
      expect((await download(airlock, fileUrl(id, './uploads//inside.txt'))).bytes.toString()).to.equal('inside');
    });

    it('answers VALIDATION_ERROR without a path, for a directory, and for unknown or repeated parameters', async () => {
      const id = await taskWith([['a.txt', 'a']]);
      for (const query of ['', '?path=', `?path=uploads`, '?path=.', '?path=a.txt&x=1', '?path=a&path=b']) {
        const res = await airlock.api(`/tasks/${id}/artifacts/download${query}`);
        expect(res.status, query).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_ERROR');
      }
      expect((await airlock.api(`/tasks/${id}/artifacts/download`)).body.error.message).to.match(/^Query parameter "path" is required/);
      expect((await airlock.api(fileUrl(id, 'uploads'))).body.error.message).to.match(/^"uploads" is a directory/);
    });
  });

  describe('archive', () => {
    it('streams the whole workspace as a .tar.gz that unpacks to the same files, without symlinks', async () => {
      const big = Buffer.alloc(300_000, 'q');
      const id = await taskWith([['report.csv', 'r,s\n'], ['big.bin', big], ['bundle.zip', zipBuffer([{ name: 'deep/er/file.txt', content: 'deep' }])]]);
      await writeFile(workspace(id, 'downloads', 'answer.md'), '# Answer\n');
      await symlink('/etc/passwd', workspace(id, 'downloads', 'passwd'));
      const res = await download(airlock, `/tasks/${id}/artifacts/archive`);
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-type')).to.equal('application/gzip');
      expect(res.headers.get('content-disposition')).to.equal(`attachment; filename="task-${id}.tar.gz"`);
      const out = await mkdtemp(join(tmpdir(), 'airlock-archive-'));
      try {
        await writeFile(join(out, 'a.tar.gz'), res.bytes);
        await mkdir(join(out, 'x'));
        const types: string[] = [];
        await tar.extract({ file: join(out, 'a.tar.gz'), cwd: join(out, 'x'), onReadEntry: (entry) => void types.push(entry.type) });
        expect(types).to.not.include('SymbolicLink');
        const listed = (await list(id)).body.data.files.map((f: { path: string }) => f.path);
        const unpacked = (await readdir(join(out, 'x'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(join(out, 'x').length + 1)).sort();
        expect(unpacked).to.deep.equal(listed);
        for (const path of listed) expect((await readFile(join(out, 'x', path))).equals(await readFile(workspace(id, path))), path).to.equal(true);
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    });
  });

  describe('deliverables', () => {
    it('lets the agent write to downloads/ with the built-in tools and the user download it', async () => {
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: '/call write_file {"path":"downloads/summary.md","content":"# Summary\\nAll good.\\n"}\n/reply Wrote downloads/summary.md' } });
      const task = await waitForStatus(airlock, res.body.data.id, ['completed'], 15_000);
      expect(task.output.toolCalls[0]).to.include({ toolName: 'write_file', status: 'success' });
      const file = await download(airlock, fileUrl(task.id, 'downloads/summary.md'));
      expect(file.bytes.toString()).to.equal('# Summary\nAll good.\n');
      expect(file.headers.get('content-type')).to.equal('text/markdown');
    });

    it('makes the workspace, with uploads/ and downloads/, when a tool process first needs it, and none for a task that never starts one', async () => {
      const chat = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply just words' } });
      await waitForStatus(airlock, chat.body.data.id, ['completed']);
      expect(existsSync(workspace(chat.body.data.id))).to.equal(false);
      expect((await list(chat.body.data.id)).body.data).to.deep.equal({ files: [] });
      expect((await airlock.api(fileUrl(chat.body.data.id, 'downloads/x.txt'))).body.error.code).to.equal('NOT_FOUND');
      expect((await airlock.api(`/tasks/${chat.body.data.id}`)).body.data.workspaceBytes).to.equal(0);

      const tool = await airlock.api('/tasks', { method: 'POST', json: { message: '/call run_shell_command {"command":"ls -d uploads downloads"}\n/reply listed' } });
      const task = await waitForStatus(airlock, tool.body.data.id, ['completed'], 15_000);
      expect(task.output.toolCalls[0].output).to.match(/^Exit code: 0\nStdout:\ndownloads\nuploads\b/);
      expect(existsSync(workspace(task.id, 'downloads'))).to.equal(true);
    });
  });
});

describe('Workspace retention', function () {
  this.timeout(30_000);
  let airlock: TestAirlock;

  before(async () => {
    airlock = await startTestAirlock({ config: { workspaces: { retentionMs: 1, sweepIntervalMs: 20 } } });
  });
  after(() => airlock.stop());

  it('deletes a finished task\'s workspace after the retention period; the task stays, its artifacts are empty', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', body: form('/reply bye', [['old.txt', 'old']]) });
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    await waitFor(async () => !(await readdir(join(airlock.dataDir, 'workspaces'))).includes(id), 'the sweep to delete the workspace');
    const task = (await airlock.api(`/tasks/${id}`)).body.data;
    expect(task).to.include({ status: 'completed', workspaceBytes: 0 });
    expect((await airlock.api(`/tasks/${id}/artifacts`)).body.data).to.deep.equal({ files: [] });
    expect((await airlock.api(`/tasks/${id}/artifacts/download?path=uploads/old.txt`)).body.error.code).to.equal('NOT_FOUND');
    const archive = await download(airlock, `/tasks/${id}/artifacts/archive`);
    expect(archive.status).to.equal(200);
    const entries: string[] = [];
    const out = await mkdtemp(join(tmpdir(), 'airlock-empty-archive-'));
    try {
      await writeFile(join(out, 'a.tar.gz'), archive.bytes);
      await tar.list({ file: join(out, 'a.tar.gz'), onReadEntry: (entry) => void entries.push(entry.path) });
    } finally {
      await rm(out, { recursive: true, force: true });
    }
    expect(entries).to.deep.equal([]);
    // A follow-up gets a fresh workspace, kept while the task is live.
    const follow = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', body: form('/delay 10000\n/reply again', [['new.txt', 'new']]) });
    expect(follow.status, follow.text).to.equal(200);
    expect((await readFile(join(airlock.dataDir, 'workspaces', id, 'uploads', 'new.txt'), 'utf8'))).to.equal('new');
    await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
  });
});

import { expect } from 'chai';
import { readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { RecordingModel } from '../support/fakes.js';
import { tarBuffer, zipBuffer } from '../support/archiveWriters.js';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

const MAX_FILE_BYTES = 256 * 1024;

/** A multipart body with `message` and the given files (name → content), in order. */
function form(message: string, files: [string, string | Buffer][]): FormData {
  const body = new FormData();
  body.set('message', message);
  for (const [name, content] of files) body.append('files', new Blob([content]), name);
  return body;
}

describe('Uploads (POST /tasks and follow-ups with files)', function () {
  this.timeout(30_000);
  let airlock: TestAirlock;
  let model: RecordingModel;

  before(async () => {
    model = new RecordingModel();
    airlock = await startTestAirlock({
      config: { uploads: { maxFileBytes: MAX_FILE_BYTES } },
      overrides: { modelFor: () => model },
    });
  });
  after(() => airlock.stop());

  const create = (body: FormData) => airlock.api('/tasks', { method: 'POST', body });
  const workspace = (id: string, ...path: string[]) => join(airlock.dataDir, 'workspaces', id, ...path);
  const history = async (id: string) => (await airlock.api(`/tasks/${id}/history`)).body.data.messages;
  const taskCount = async () => (await airlock.api('/tasks?includeHidden=true&limit=1')).body.pagination.total;
  const leftovers = async () => ({
    tmp: await readdir(join(airlock.dataDir, 'tmp', 'uploads')),
    workspaces: await readdir(join(airlock.dataDir, 'workspaces')).catch(() => []),
  });
  /** The user text of the newest user message the model received for a task's latest run. */
  const modelSaw = () => {
    const messages = model.requests.at(-1)!.messages;
    const user = messages.filter((m) => m.role === 'user').at(-1)!;
    return (user.content[0] as { text: string }).text;
  };

  /** Sends a request that must be refused, and checks it left no task, no temp file and no workspace. */
  async function refused(body: FormData, status: number, code: string, message: RegExp) {
    const before = { count: await taskCount(), ...(await leftovers()) };
    const res = await create(body);
    expect(res.status, res.text).to.equal(status);
    expect(res.body.error.code).to.equal(code);
    expect(res.body.error.message).to.match(message);
    expect(await taskCount(), 'no task was created').to.equal(before.count);
    expect(await leftovers(), 'nothing left behind').to.deep.equal({ tmp: [], workspaces: before.workspaces });
    return res.body.error;
  }

  it('saves one file under uploads/, records it on the message and lists it to the model first', async () => {
    const res = await create(form('/reply got it', [['data.csv', 'a,b\n1,2\n']]));
    expect(res.status, res.text).to.equal(201);
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    expect(await readFile(workspace(id, 'uploads', 'data.csv'), 'utf8')).to.equal('a,b\n1,2\n');
    expect(await readdir(workspace(id)), 'uploads and downloads exist').to.have.members(['uploads', 'downloads']);
    const [user] = await history(id);
    expect(user.attachedFiles).to.deep.equal([{ name: 'data.csv', path: 'uploads/data.csv' }]);
    expect(user.content).to.equal('/reply got it');
    expect(modelSaw()).to.equal('Uploaded files:\n- /workspace/uploads/data.csv\n\n/reply got it');
    expect(model.requests.at(-1)!.system).to.include('/workspace/downloads/');
    expect((await leftovers()).tmp, 'the temp dir is emptied').to.deep.equal([]);
  });

  it('takes 20 files in one request, in their order', async () => {
    const files = Array.from({ length: 20 }, (_, i): [string, string] => [`f${String(i).padStart(2, '0')}.txt`, `file ${i}`]);
    const res = await create(form('/reply twenty', files));
    expect(res.status, res.text).to.equal(201);
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    const [user] = await history(id);
    expect(user.attachedFiles.map((f: { path: string }) => f.path)).to.deep.equal(files.map(([name]) => `uploads/${name}`));
    for (const [name, content] of files) expect(await readFile(workspace(id, 'uploads', name), 'utf8')).to.equal(content);
  });

  it('refuses 21 files with VALIDATION_ERROR and keeps none of them', async () => {
    const files = Array.from({ length: 21 }, (_, i): [string, string] => [`f${i}.txt`, 'x']);
    const error = await refused(form('/reply no', files), 400, 'VALIDATION_ERROR', /^Too many files: at most 20 per request$/);
    expect(error.details).to.deep.equal([{ path: '/files', message: 'at most 20 files' }]);
  });

  it('refuses a file over the size limit with PAYLOAD_TOO_LARGE while it streams, keeping nothing', async () => {
    const error = await refused(form('/reply no', [['small.txt', 'ok'], ['big.bin', Buffer.alloc(MAX_FILE_BYTES + 1, 1)]]), 413, 'PAYLOAD_TOO_LARGE', /^File "big\.bin" is larger than 262144 bytes/);
    expect(error.details).to.deep.equal([{ path: '/files/1', message: 'larger than 262144 bytes' }]);
    // Exactly at the limit is fine.
    expect((await create(form('/reply ok', [['edge.bin', Buffer.alloc(MAX_FILE_BYTES, 1)]]))).status).to.equal(201);
  });

  it('keeps no path component of a client file name, and numbers duplicates', async () => {
    const res = await create(form('/reply names', [['report.csv', '1'], ['report.csv', '2'], ['../../etc/passwd', 'p'], ['..', 'dots'], ['C:\\Users\\me\\notes.txt', 'n']]));
    expect(res.status, res.text).to.equal(201);
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    expect((await readdir(workspace(id, 'uploads'))).sort()).to.deep.equal(['file', 'notes.txt', 'passwd', 'report (1).csv', 'report.csv']);
    expect(await readFile(workspace(id, 'uploads', 'report (1).csv'), 'utf8')).to.equal('2');
    const [user] = await history(id);
    expect(user.attachedFiles).to.deep.equal([
      { name: 'report.csv', path: 'uploads/report.csv' },
      { name: 'report.csv', path: 'uploads/report (1).csv' },
      { name: 'passwd', path: 'uploads/passwd' },
      { name: 'file', path: 'uploads/file' },
      { name: 'notes.txt', path: 'uploads/notes.txt' },
    ]);
  });

  it('extracts a zip into uploads/<name>/ keeping its directories, and keeps the zip', async () => {
    const zip = zipBuffer([{ name: 'q1/' }, { name: 'q1/jan/sales.csv', content: 'x,y\n' }, { name: 'summary.md', content: '# Sales' }]);
    const res = await create(form('/reply unzipped', [['sales.zip', zip]]));
    expect(res.status, res.text).to.equal(201);
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    expect(await readFile(workspace(id, 'uploads', 'sales', 'q1', 'jan', 'sales.csv'), 'utf8')).to.equal('x,y\n');
    expect(await readFile(workspace(id, 'uploads', 'sales.zip'))).to.deep.equal(zip);
    const [user] = await history(id);
    expect(user.attachedFiles).to.deep.equal([
      { name: 'sales.zip', path: 'uploads/sales.zip' },
      { name: 'sales.csv', path: 'uploads/sales/q1/jan/sales.csv' },
      { name: 'summary.md', path: 'uploads/sales/summary.md' },
    ]);
    expect(modelSaw()).to.equal('Uploaded files:\n- /workspace/uploads/sales.zip\n- /workspace/uploads/sales/q1/jan/sales.csv\n- /workspace/uploads/sales/summary.md\n\n/reply unzipped');
  });

  it('extracts a .tar.gz and a .tgz the same way', async () => {
    const tgz = tarBuffer([{ path: 'logs/' }, { path: 'logs/app.log', content: 'started\n' }], { gzip: true });
    const res = await create(form('/reply untarred', [['backup.tar.gz', tgz], ['more.tgz', tgz]]));
    expect(res.status, res.text).to.equal(201);
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    expect(await readFile(workspace(id, 'uploads', 'backup', 'logs', 'app.log'), 'utf8')).to.equal('started\n');
    expect(await readFile(workspace(id, 'uploads', 'more', 'logs', 'app.log'), 'utf8')).to.equal('started\n');
  });

  it('refuses a zip-slip zip naming the archive and the entry, and keeps none of the request\'s files', async () => {
    const evil = zipBuffer([{ name: 'fine.txt', content: 'ok' }, { name: '../../../escaped.txt', content: 'pwned' }]);
    const error = await refused(form('/reply no', [['good.csv', 'a'], ['evil.zip', evil]]), 400, 'VALIDATION_ERROR', /^Archive "evil\.zip" was refused: entry "\.\.\/\.\.\/\.\.\/escaped\.txt" climbs out of the archive with "\.\."; nothing was saved$/);
    expect(error.details).to.deep.equal([{ path: '/files/1', message: 'entry "../../../escaped.txt" climbs out of the archive with ".."' }]);
    expect(await readdir(airlock.dataDir)).to.not.include('escaped.txt');
  });

  it('refuses a zip with a symlink', async () => {
    await refused(form('/reply no', [['links.zip', zipBuffer([{ name: 'passwd', content: '/etc/passwd', symlink: true }])]]), 400, 'VALIDATION_ERROR', /^Archive "links\.zip" was refused: entry "passwd" is a link/);
  });

  it('refuses a zip bomb with PAYLOAD_TOO_LARGE', async () => {
    const bomb = zipBuffer([{ name: 'zeros.bin', content: Buffer.alloc(4 * 1024 * 1024) }]);
    expect(bomb.length, 'the bomb itself is small').to.be.below(MAX_FILE_BYTES);
    await refused(form('/reply no', [['bomb.zip', bomb]]), 413, 'PAYLOAD_TOO_LARGE', /^Archive "bomb\.zip" expands to more than 100 times its own size; nothing was saved$/);
  });

  it('refuses a tar with ".."', async () => {
    await refused(form('/reply no', [['evil.tar', tarBuffer([{ path: '../evil.sh', content: 'rm -rf /' }])]]), 400, 'VALIDATION_ERROR', /^Archive "evil\.tar" was refused: entry "\.\.\/evil\.sh" climbs out/);
  });

  it('refuses files in another field, and files with env or secrets', async () => {
    const wrongField = new FormData();
    wrongField.set('message', 'x');
    wrongField.append('file', new Blob(['a']), 'a.txt');
    await refused(wrongField, 400, 'VALIDATION_ERROR', /^A file was sent in the field "file": send files in the field "files"$/);
    const withSecrets = form('x', [['a.txt', 'a']]);
    withSecrets.set('secrets', '{"A":"b"}');
    await refused(withSecrets, 400, 'VALIDATION_ERROR', /cannot carry both files and env\/secrets/);
    const badFields = form('', [['a.txt', 'a']]);
    await refused(badFields, 400, 'VALIDATION_ERROR', /\/message/);
  });

  it('leaves nothing behind when the client disconnects in the middle of a file', async () => {
    const before = await taskCount();
    const boundary = 'airlock-test-boundary';
    const req = request(`${airlock.url}/api/v1/tasks`, { method: 'POST', headers: { authorization: `Bearer ${airlock.key}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(10 * 1024 * 1024) } });
    req.on('error', () => {});
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\n/reply never\r\n--${boundary}\r\nContent-Disposition: form-data; name="files"; filename="half.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    req.write(Buffer.alloc(64 * 1024, 1));
    const [tempDir] = await waitFor(async () => {
      const dirs = (await leftovers()).tmp;
      return dirs.length && (await readdir(join(airlock.dataDir, 'tmp', 'uploads', dirs[0]!))).length ? dirs : undefined;
    }, 'the upload to reach the disk');
    req.destroy();
    await waitFor(async () => (await leftovers()).tmp.length === 0, `${tempDir} to be removed`);
    expect(await taskCount()).to.equal(before);
  });

  it('refuses a file part on the approve route before writing it', async () => {
    const body = new FormData();
    body.set('outcome', 'proceed_once');
    body.append('files', new Blob(['x']), 'x.txt');
    const res = await airlock.api('/tasks/00000000-0000-4000-8000-000000000000/tools/toolu_1/approve', { method: 'POST', body });
    expect(res.status).to.equal(400);
    expect(res.body.error).to.deep.include({ code: 'VALIDATION_ERROR', message: 'This route does not accept files' });
  });

  describe('follow-ups with files', () => {
    it('adds the files to the same uploads/ folder, numbering clashes, and lists them to the model', async () => {
      const res = await create(form('/reply first', [['report.csv', 'v1']]));
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      const follow = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', body: form('/reply second', [['report.csv', 'v2'], ['extra.zip', zipBuffer([{ name: 'x.txt', content: 'x' }])]]) });
      expect(follow.status, follow.text).to.equal(200);
      await waitForStatus(airlock, id, ['completed']);
      expect(await readFile(workspace(id, 'uploads', 'report (1).csv'), 'utf8')).to.equal('v2');
      const messages = await history(id);
      expect(messages[2].attachedFiles).to.deep.equal([
        { name: 'report.csv', path: 'uploads/report (1).csv' },
        { name: 'extra.zip', path: 'uploads/extra.zip' },
        { name: 'x.txt', path: 'uploads/extra/x.txt' },
      ]);
      expect(modelSaw()).to.equal('Uploaded files:\n- /workspace/uploads/report (1).csv\n- /workspace/uploads/extra.zip\n- /workspace/uploads/extra/x.txt\n\n/reply second');
    });

    it('answers CONFLICT for a busy task before extracting anything, and keeps nothing', async () => {
      const res = await create(form('/delay 3000\n/reply slow', [['a.txt', 'a']]));
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['running']);
      const follow = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', body: form('/reply too soon', [['b.txt', 'b']]) });
      expect(follow.status).to.equal(409);
      expect(follow.body.error.code).to.equal('CONFLICT');
      expect(await readdir(workspace(id, 'uploads'))).to.deep.equal(['a.txt']);
      expect((await leftovers()).tmp).to.deep.equal([]);
      await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
    });

    it('refuses a bad archive in a follow-up and leaves the workspace as it was', async () => {
      const res = await create(form('/reply first', [['keep.txt', 'k']]));
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      const follow = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', body: form('/reply no', [['ok.txt', 'o'], ['bad.zip', 'not a zip']]) });
      expect(follow.status).to.equal(400);
      expect(follow.body.error.message).to.match(/^Archive "bad\.zip" was refused: it is not a readable zip archive/);
      expect(await readdir(workspace(id, 'uploads'))).to.deep.equal(['keep.txt']);
      expect((await airlock.api(`/tasks/${id}`)).body.data.status).to.equal('completed');
      expect(await history(id)).to.have.length(2);
    });
  });
});

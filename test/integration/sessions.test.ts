import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestAirlock, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { RecordingModel } from '../support/fakes.js';

describe('Task sessions: expiry and restore', function () {
  this.timeout(90_000);
  let dir: string;
  let airlock: TestAirlock;
  const model = new RecordingModel();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-sessions-'));
    await writeFile(join(dir, 'airlock.config.json'), JSON.stringify({ tasks: { sessionIdleMs: 1_000 } }));
    airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: join(dir, 'airlock.config.json') }, overrides: { modelFor: () => model } });
  });
  after(async () => {
    await airlock.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function followUp(id: string, body: Record<string, unknown>): Promise<any> {
    const res = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: body });
    expect(res.status, res.text).to.equal(200);
    return waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
  }

  it('ends an idle session but keeps the workspace; a follow-up restores the history into the model context, in the same workspace', async () => {
    const created = await airlock.api('/tasks', {
      method: 'POST',
      json: { message: '/call write_file {"path":"notes.txt","content":"kept across sessions"}\n/reply saved', secrets: { TOKEN: 'tok-123' } },
    });
    const id = created.body.data.id;
    const first = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
    expect(first.status).to.equal('completed');

    // Within the idle time, a follow-up runs in the same session, its secret still there.
    const again = await followUp(id, { message: '/call run_shell_command {"command":"printenv TOKEN | wc -c"}\n/reply counted' });
    expect(again.sessionId).to.equal(first.sessionId);
    expect(again.output.toolCalls[0].output).to.match(/Stdout:\n8\n/);

    // Past the idle time the session is gone; the workspace is not.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await readFile(join(airlock.dataDir, 'workspaces', id, 'notes.txt'), 'utf8')).to.equal('kept across sessions');
    const requestsBefore = model.requests.length;
    const restored = await followUp(id, { message: '/call read_file {"path":"notes.txt"}\n/reply read it' });
    expect(restored.status).to.equal('completed');
    expect(restored.sessionId, 'a new session').to.not.equal(first.sessionId);
    expect(restored.output.toolCalls[0].output).to.include('kept across sessions');

    // The model saw the whole earlier conversation, tool calls and results included.
    const seen = model.requests[requestsBefore]!.messages;
    const flat = JSON.stringify(seen);
    expect(flat).to.include('write_file').and.to.include('run_shell_command').and.to.include('read_file');
    expect(seen.filter((m) => m.role === 'assistant').length).to.be.at.least(4);
    expect(seen.flatMap((m) => m.content).filter((b) => b.type === 'tool_use').map((b) => (b as { name: string }).name))
      .to.deep.equal(['write_file', 'run_shell_command']);

    // The secret ended with the old session, and the stream says so rather than run silently without it.
    const events = (await airlock.api(`/tasks/${id}/stream?after=0`)).text;
    expect(events).to.include("The task's secrets (TOKEN) ended with its previous session");
  });
});

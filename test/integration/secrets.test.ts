import { expect } from 'chai';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ScriptedModelClient } from '../../src/model/scriptedModelClient.js';
import { startTestAirlock, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { FakeToolRouter, ManualModel, text } from '../support/fakes.js';
import { readSse } from '../support/sse.js';

const CANARY = 'canary-7f3a9c2e-d41b';
const FOLLOW_UP_CANARY = 'second/canary "quoted" value';

describe('Secrets', () => {
  let airlock: TestAirlock;
  let tools: FakeToolRouter;
  const manual = new ManualModel();
  const scripted = new ScriptedModelClient();
  const responses: string[] = [];

  before(async () => {
    // echo_env does what `echo $NAME` in a shell tool would: it prints the variable's value.
    tools = new FakeToolRouter({ echo_env: { handler: (args, { variables }) => text(`${String(args.name)}=${variables[String(args.name)]}`) } });
    airlock = await startTestAirlock({
      overrides: {
        toolRouter: tools,
        modelFor: () => ({ description: 'switch', stream: (req) => (JSON.stringify(req.messages).includes('split') ? manual.stream(req) : scripted.stream(req)) }),
      },
    });
  });
  after(async () => {
    if (airlock) await airlock.stop().catch(() => undefined);
  });

  async function api(path: string, init?: Parameters<TestAirlock['api']>[1]) {
    const res = await airlock.api(path, init);
    responses.push(res.text, JSON.stringify([...res.headers]));
    return res;
  }

  it('scrubs a canary secret from everything stored, logged, streamed or returned', async () => {
    const created = await api('/tasks', {
      method: 'POST',
      json: { message: `/call echo_env {"name":"CANARY"}\n/reply I saw ${CANARY}`, env: { CANARY: 'env-loses', PLAIN: 'visible' }, secrets: { CANARY } },
    });
    const id = created.body.data.id;
    const task = await waitForStatus(airlock, id, ['completed']);
    // The tool saw the real value: secrets win over env.
    expect(tools.sessions.at(-1)!.variables).to.deep.include({ CANARY, PLAIN: 'visible' });
    expect(task.output.toolCalls[0].output).to.equal('CANARY=[secret:CANARY]');
    expect(task.output.content).to.equal('I saw [secret:CANARY]');
    expect(task.env).to.deep.equal({ CANARY: 'env-loses', PLAIN: 'visible' });

    await api(`/tasks/${id}/messages`, { method: 'POST', json: { message: `/call echo_env {"name":"LATER"}\n/reply ${JSON.stringify(FOLLOW_UP_CANARY)}`, secrets: { LATER: FOLLOW_UP_CANARY } } });
    const second = await waitForStatus(airlock, id, ['completed']);
    expect(second.output.content).to.equal('"[secret:LATER]"');

    // A secret split across two model deltas is still caught.
    const split = await api('/tasks', { method: 'POST', json: { message: 'split', secrets: { CANARY } } });
    await waitForStatus(airlock, split.body.data.id, ['running']);
    manual.push({ type: 'text_delta', text: `before ${CANARY.slice(0, 9)}` }, { type: 'text_delta', text: `${CANARY.slice(9)} after` });
    manual.end(`before ${CANARY} after`);
    await waitForStatus(airlock, split.body.data.id, ['completed']);

    for (const taskId of [id, split.body.data.id]) {
      await api(`/tasks/${taskId}`);
      await api(`/tasks/${taskId}/history`);
      const live = await readSse(`${airlock.url}/api/v1/tasks/${taskId}/stream`, { authorization: `Bearer ${airlock.key}` });
      const replay = await readSse(`${airlock.url}/api/v1/tasks/${taskId}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
      responses.push(...live.frames.map((f) => f.raw), ...replay.frames.map((f) => f.raw));
      if (taskId === split.body.data.id) {
        const partial = replay.frames.filter((f) => f.event === 'content' && f.data.isPartial).map((f) => f.data.text).join('');
        expect(partial).to.equal('before [secret:CANARY] after');
      }
    }
    await api('/tasks?includeHidden=true');
    await airlock.close(); // closes the store and flushes the log; the data dir stays until after()

    const entries = await readdir(airlock.dataDir, { recursive: true, withFileTypes: true });
    const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath ?? entry.path, entry.name));
    expect(files.map((file) => file.slice(airlock.dataDir.length + 1))).to.include('airlock.db');
    const stored = Buffer.concat(await Promise.all(files.map((file) => readFile(file))));
    const everything = [stored.toString('latin1'), airlock.logs.join('\n'), responses.join('\n')];
    for (const value of [CANARY, FOLLOW_UP_CANARY, JSON.stringify(FOLLOW_UP_CANARY).slice(1, -1), encodeURIComponent(FOLLOW_UP_CANARY)]) {
      for (const [index, haystack] of everything.entries()) expect(haystack.includes(value), `${value} in ${['the store', 'the log', 'a response'][index]}`).to.equal(false);
    }
    expect(stored.toString('latin1')).to.include('[secret:CANARY]');
    expect(airlock.logs.length).to.be.greaterThan(10);
    expect(tools.unexpected).to.deep.equal([]);
  });
});

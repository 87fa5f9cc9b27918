import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAskHttpServer } from '../../fixtures/mcp/askServer.js';
import type { AskHttpServer } from '../../fixtures/mcp/askServer.js';
import { startEverything } from '../../fixtures/mcp/everything.js';
import { startModernHttpServer } from '../../fixtures/mcp/modernServer.js';
import type { ModernHttpServer } from '../../fixtures/mcp/modernServer.js';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { MAX_SERVER_REQUESTS_WAITING } from '../../src/mcp/serverRequests.js';
import { outputs, script } from '../support/mcpHarness.js';
import { openSse, readSse } from '../support/sse.js';
import type { SseFrame } from '../support/sse.js';

const SAMPLING_DENY_REASON = 'this server may not use the model';
const ASK_TOOL_TIMEOUT_MS = 1_000;

describe('MCP server requests through the task API (elicitation, input_required, sampling)', function () {
  this.timeout(60_000);

  let airlock: TestAirlock;
  let configDir: string;
  let ask: AskHttpServer;
  let modern: ModernHttpServer;
  let timedKey: string;
  let otherKey: string;

  before(async () => {
    [ask, modern] = await Promise.all([startAskHttpServer(), startModernHttpServer()]);
    const everything = await startEverything('stdio-command');
    // Each test task names the servers it uses in its env: a server whose template has no value is
    // skipped, so a task spawns only the server-everything process it needs.
    const perTask = (key: string) => ({ type: 'stdio', command: everything.command, args: everything.args, env: { AIRLOCK_TEST_RUN: `{{mcp.${key}}}` } });
    const servers = {
      everything: perTask('EVERYTHING'),
      asker: perTask('ASKER'),
      denied: perTask('DENIED'),
      modern: { type: 'http', url: `${modern.url}?run={{mcp.MODERN}}`, protocol: '2026-07-28' },
      ask: { type: 'http', url: `${ask.url}?run={{mcp.ASK}}`, toolTimeout: ASK_TOOL_TIMEOUT_MS },
      flood: { type: 'http', url: `${ask.url}?run={{mcp.FLOOD}}` },
    };
    const project = {
      mcpServers: servers,
      builtinTools: false,
      samplingPolicies: [
        { server: 'denied', decision: 'deny', reason: SAMPLING_DENY_REASON },
        { server: 'ask*', decision: 'ask', reason: 'a person checks model use' },
        { decision: 'allow' },
      ],
    };
    configDir = await mkdtemp(join(tmpdir(), 'airlock-server-requests-'));
    const configPath = join(configDir, 'airlock.config.json');
    await writeFile(configPath, JSON.stringify({
      server: { shutdownGraceMs: 100 },
      tasks: { concurrency: 16 },
      projects: { default: project, timed: { ...project, approvalTimeoutMs: 1_000 }, other: { builtinTools: false } },
    }));
    airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: configPath } });
    timedKey = (await createApiKey(airlock.store, { projectId: 'timed' })).key;
    otherKey = (await createApiKey(airlock.store, { projectId: 'other' })).key;
  });

  after(async () => {
    await airlock?.stop();
    await Promise.all([ask?.close(), modern?.close()]);
    if (configDir) await rm(configDir, { recursive: true, force: true });
  });

  async function create(message: string, env: Record<string, string>, options: { key?: string; autoExecute?: boolean; secrets?: Record<string, string> } = {}): Promise<string> {
    const res = await airlock.api('/tasks', {
      method: 'POST',
      json: { message, env, autoExecute: options.autoExecute ?? true, ...(options.secrets ? { secrets: options.secrets } : {}) },
      ...(options.key ? { key: options.key } : {}),
    });
    expect(res.status, res.text).to.equal(201);
    return res.body.data.id;
  }

  /** Waits until the task lists `count` pending inputs, returning the task. */
  async function pendingInputs(id: string, count = 1, key?: string): Promise<any> {
    return waitFor(async () => {
      const { body } = await airlock.api(`/tasks/${id}`, key ? { key } : {});
      return body.data.pendingInputs?.length === count ? body.data : undefined;
    }, `${count} pending input(s) of task ${id}`, 20_000);
  }

  const answer = (id: string, requestId: string, json: unknown, key?: string) =>
    airlock.api(`/tasks/${id}/inputs/${requestId}`, { method: 'POST', json, ...(key ? { key } : {}) });

  async function eventsOf(id: string, key = airlock.key): Promise<SseFrame[]> {
    return (await readSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${key}` })).frames;
  }

  const framesOf = (frames: SseFrame[], event: string) => frames.filter((f) => f.event === event).map((f) => f.data);
  const statuses = (frames: SseFrame[]) => framesOf(frames, 'status').filter((s) => !s.message).map((s) => s.status);

  describe('form elicitation (server-everything trigger-elicitation-request)', () => {
    const ELICIT = 'everything__trigger-elicitation-request';

    it('puts the task in awaiting_approval with a pending input; valid content goes to the server, defaults filled in', async () => {
      const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' });
      const task = await pendingInputs(id);
      expect(task.status).to.equal('awaiting_approval');
      expect(task).not.to.have.property('pendingApprovals');
      const [pending] = task.pendingInputs;
      expect(pending).to.have.all.keys('requestId', 'server', 'callId', 'mode', 'message', 'schema', 'requestedAt');
      expect(pending.requestId).to.match(/^inp_[0-9a-f]{32}$/);
      expect(pending).to.deep.include({ server: 'everything', callId: 'toolu_scripted_1', mode: 'form', message: 'Please provide inputs for the following fields:' });
      expect(pending.schema.required).to.deep.equal(['name']);
      expect(pending.schema.properties.integer).to.include({ type: 'integer', default: 42 });
      expect(Date.parse(pending.requestedAt)).to.be.closeTo(Date.now(), 20_000);

      const res = await answer(id, pending.requestId, { action: 'accept', content: { name: 'Ada Lovelace', check: true, email: 'ada@example.com' } });
      expect(res.status, res.text).to.equal(200);
      expect(res.body).to.deep.equal({ success: true, data: { requestId: pending.requestId, action: 'accept' } });

      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.status, JSON.stringify(done.error)).to.equal('completed');
      expect(done).not.to.have.property('pendingInputs');
      const [output] = outputs(done);
      expect(output).to.include('User provided the requested information');
      expect(output).to.include('- Name: Ada Lovelace').and.include('- Email: ada@example.com').and.include('- Agreed to terms: true');
      // The schema's defaults, filled in for the fields the person left out (SEP-1034).
      expect(output).to.include('- Favorite Integer: 42').and.include('- Favorite Number: 3.14');

      const frames = await eventsOf(id);
      const [required] = framesOf(frames, 'input_required');
      expect(required).to.deep.equal({ requestId: pending.requestId, server: 'everything', callId: 'toolu_scripted_1', mode: 'form', message: pending.message, schema: pending.schema });
      const [resolved] = framesOf(frames, 'input_resolved');
      expect(resolved).to.deep.include({ requestId: pending.requestId, action: 'accept' });
      expect(resolved.answeredBy).to.match(/^key:key_/);
      expect(resolved.content).to.include({ name: 'Ada Lovelace', integer: 42, firstLine: 'It was a dark and stormy night.' });
      expect(statuses(frames)).to.deep.equal(['running', 'connecting', 'processing', 'awaiting_approval', 'running', 'processing', 'completed']);
      const order = frames.map((f) => (f.event === 'status' ? `status:${f.data.status}` : f.event));
      expect(order.indexOf('status:awaiting_approval')).to.be.lessThan(order.indexOf('input_required'));
      expect(order.indexOf('input_resolved')).to.be.lessThan(order.lastIndexOf('status:running'));
    });

    it('refuses content the schema rejects with VALIDATION_ERROR and the ajv messages; nothing is consumed', async () => {
      const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;

      const missing = await answer(id, pending.requestId, { action: 'accept', content: { email: 'ada@example.com' } });
      expect(missing.status, missing.text).to.equal(400);
      expect(missing.body.error.code).to.equal('VALIDATION_ERROR');
      expect(missing.body.error.details).to.deep.include({ path: '/content', message: "must have required property 'name'" });
      const wrong = await answer(id, pending.requestId, { action: 'accept', content: { name: 'Ada', email: 'not an email', integer: 500 } });
      expect(wrong.status).to.equal(400);
      expect(wrong.body.error.message).to.match(/^The content does not match the requested schema: /);
      expect(wrong.body.error.details).to.deep.include.members([
        { path: '/content/email', message: 'must match format "email"' },
        { path: '/content/integer', message: 'must be <= 100' },
      ]);
      for (const body of [{}, { action: 'maybe' }, { action: 'accept', content: 'Ada' }, { action: 'accept', extra: 1 }]) {
        const bad = await answer(id, pending.requestId, body);
        expect([bad.status, bad.body.error.code], JSON.stringify(body)).to.deep.equal([400, 'VALIDATION_ERROR']);
      }

      const still = await airlock.api(`/tasks/${id}`);
      expect(still.body.data.status).to.equal('awaiting_approval');
      expect(still.body.data.pendingInputs.map((p: any) => p.requestId)).to.deep.equal([pending.requestId]);
      expect(framesOf(await eventsOfLive(id), 'input_resolved')).to.deep.equal([]);

      expect((await answer(id, pending.requestId, { action: 'accept', content: { name: 'Ada' } })).status).to.equal(200);
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(outputs(done)[0]).to.include('- Name: Ada');
    });

    it('decline and cancel reach the server as such, and content sent with them is not passed on', async () => {
      for (const [action, said] of [['decline', 'User declined to provide the requested information'], ['cancel', 'User cancelled the elicitation dialog']] as const) {
        const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' });
        const [pending] = (await pendingInputs(id)).pendingInputs;
        const res = await answer(id, pending.requestId, { action, content: { name: 'Ada' } });
        expect(res.body.data).to.deep.equal({ requestId: pending.requestId, action });
        const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
        const [output] = outputs(done);
        expect(output).to.include(said);
        expect(output).not.to.include('Ada');
        const [resolved] = framesOf(await eventsOf(id), 'input_resolved');
        expect(resolved).to.deep.include({ requestId: pending.requestId, action });
        expect(resolved).not.to.have.property('content');
      }
    });

    it('a stream that connects while the request is pending gets it in the catch-up, and a resume does not repeat it', async () => {
      const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      const url = `${airlock.url}/api/v1/tasks/${id}/stream`;
      const auth = { authorization: `Bearer ${airlock.key}` };
      const fresh = await openSse(url, auth);
      let resumed: Awaited<ReturnType<typeof openSse>> | undefined;
      try {
        const caught = await fresh.waitFor((f) => f.event === 'input_required');
        const events = fresh.frames.map((f) => f.event);
        expect(events.indexOf('history_done')).to.be.lessThan(events.indexOf('input_required'));
        expect(caught.data).to.deep.equal({ requestId: pending.requestId, server: 'everything', callId: 'toolu_scripted_1', mode: 'form', message: pending.message, schema: pending.schema });
        // The catch-up shows the call that is waiting too.
        expect(events.indexOf('tool_call')).to.be.lessThan(events.indexOf('input_required'));

        resumed = await openSse(url, { ...auth, 'last-event-id': String(caught.id) });
        expect((await answer(id, pending.requestId, { action: 'decline' })).status).to.equal(200);
        await Promise.all([fresh.ended, resumed.ended]);
        expect(resumed.frames.map((f) => f.event)).not.to.include('input_required');
        expect(framesOf(resumed.frames, 'input_resolved').map((r) => r.requestId)).to.deep.equal([pending.requestId]);
        expect(resumed.frames.at(-1)!.event).to.equal('done');
      } finally {
        fresh.close();
        resumed?.close();
      }
    });

    it('concurrent answers: exactly one is taken, the others get CONFLICT, and the server gets one answer', async () => {
      const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      const bodies = [
        { action: 'accept', content: { name: 'First' } }, { action: 'decline' }, { action: 'accept', content: { name: 'Third' } },
        { action: 'cancel' }, { action: 'accept', content: { name: 'Fifth' } },
      ];
      const answers = await Promise.all(bodies.map((body) => answer(id, pending.requestId, body)));
      expect(answers.map((a) => a.status).sort()).to.deep.equal([200, 409, 409, 409, 409]);
      for (const refused of answers.filter((a) => a.status === 409)) {
        expect(refused.body.error.code).to.equal('CONFLICT');
        expect(refused.body.error.message).to.match(/^The input request was already answered \((accept|decline|cancel)\)$/);
      }
      const taken = answers.findIndex((a) => a.status === 200);
      await waitForStatus(airlock, id, ['completed'], 20_000);
      const frames = await eventsOf(id);
      expect(framesOf(frames, 'input_resolved')).to.have.length(1);
      expect(framesOf(frames, 'input_resolved')[0].action).to.equal(bodies[taken]!.action);
      const late = await answer(id, pending.requestId, { action: 'cancel' });
      expect([late.status, late.body.error.message]).to.deep.equal([409, `The input request was already answered (${bodies[taken]!.action})`]);
    });

    it('another project gets NOT_FOUND and sees nothing; unknown ids are NOT_FOUND; the request stays pending', async () => {
      const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      const foreign = await answer(id, pending.requestId, { action: 'accept', content: { name: 'Mallory' } }, otherKey);
      expect([foreign.status, foreign.body.error.code]).to.deep.equal([404, 'NOT_FOUND']);
      expect((await airlock.api(`/tasks/${id}`, { key: otherKey })).status).to.equal(404);
      const unknownRequest = await answer(id, 'inp_00000000000000000000000000000000', { action: 'decline' });
      expect([unknownRequest.status, unknownRequest.body.error.message]).to.deep.equal([404, 'No input request with that id in this task']);
      const unknownTask = await answer(randomUUID(), pending.requestId, { action: 'decline' });
      expect([unknownTask.status, unknownTask.body.error.code]).to.deep.equal([404, 'NOT_FOUND']);

      expect((await airlock.api(`/tasks/${id}`)).body.data.pendingInputs.map((p: any) => p.requestId)).to.deep.equal([pending.requestId]);
      expect((await answer(id, pending.requestId, { action: 'accept', content: { name: 'Alice' } })).status).to.equal(200);
      expect(outputs(await waitForStatus(airlock, id, ['completed'], 20_000))[0]).to.include('- Name: Alice');
    });

    it('expires after the project\'s approvalTimeoutMs: the server gets cancel, answering later is CONFLICT', async () => {
      const id = await create(script([ELICIT, {}]), { EVERYTHING: '1' }, { key: timedKey });
      const [pending] = (await pendingInputs(id, 1, timedKey)).pendingInputs;
      expect(Date.parse(pending.expiresAt) - Date.parse(pending.requestedAt)).to.be.closeTo(1_000, 200);
      const done = await waitForStatus({ ...airlock, api: (path, init = {}) => airlock.api(path, { ...init, key: timedKey }) } as TestAirlock, id, ['completed', 'failed'], 20_000);
      expect(done.status).to.equal('completed');
      expect(outputs(done)[0]).to.include('User cancelled the elicitation dialog');
      const [resolved] = framesOf(await eventsOf(id, timedKey), 'input_resolved');
      expect(resolved).to.deep.equal({ requestId: pending.requestId, action: 'cancel', reason: 'expired', answeredBy: 'system' });
      const late = await answer(id, pending.requestId, { action: 'decline' }, timedKey);
      expect([late.status, late.body.error.message]).to.deep.equal([409, 'The input request was already answered (cancel)']);
    });
  });

  describe('URL elicitation (server-everything trigger-url-elicitation)', () => {
    it('surfaces the URL; accept tells the server the person completed it', async () => {
      const url = 'https://auth.example.com/consent?state=abc';
      const id = await create(script(['everything__trigger-url-elicitation', { url, message: 'Sign in to Example', elicitationId: 'el-1' }]), { EVERYTHING: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      expect(pending).to.deep.include({ server: 'everything', mode: 'url', url, message: 'Sign in to Example', elicitationId: 'el-1' });
      expect(pending).not.to.have.property('schema');
      expect((await answer(id, pending.requestId, { action: 'accept' })).status).to.equal(200);
      const done = await waitForStatus(airlock, id, ['completed'], 20_000);
      expect(outputs(done)[0]).to.include('User completed the URL elicitation flow').and.include(url);
    });
  });

  describe('2026-07-28 input_required (modern fixture confirm)', () => {
    it('becomes a pending input; the answer goes back in the retried call', async () => {
      for (const [body, expected] of [[{ action: 'accept', content: { ok: true } }, 'confirmed=true'], [{ action: 'decline' }, 'confirmed=decline']] as const) {
        const id = await create(script(['modern__confirm', {}]), { MODERN: '1' });
        const [pending] = (await pendingInputs(id)).pendingInputs;
        expect(pending).to.deep.include({ server: 'modern', callId: 'toolu_scripted_1', mode: 'form', message: 'Go ahead?' });
        expect(pending.schema.properties.ok.type).to.equal('boolean');
        const wrong = await answer(id, pending.requestId, { action: 'accept', content: { ok: 'yes' } });
        expect(wrong.body.error.details).to.deep.include({ path: '/content/ok', message: 'must be boolean' });
        expect((await answer(id, pending.requestId, body)).status).to.equal(200);
        const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
        expect(outputs(done)).to.deep.equal([expected]);
      }
    });
  });

  describe('a shared HTTP connection (ask fixture)', () => {
    it('routes each request to the task whose call it belongs to', async () => {
      const sessionsBefore = ask.sessions;
      const first = await create(script(['ask__ask', { label: 'first' }]), { ASK: '1' });
      const second = await create(script(['ask__ask', { label: 'second' }]), { ASK: '1' });
      const [a] = (await pendingInputs(first)).pendingInputs;
      const [b] = (await pendingInputs(second)).pendingInputs;
      expect(ask.sessions - sessionsBefore, 'both tasks share one connection').to.be.at.most(1);
      expect(a.message).to.equal('Answer for first');
      expect(b.message).to.equal('Answer for second');
      // An id of one task is unknown in the other.
      expect((await answer(first, b.requestId, { action: 'decline' })).status).to.equal(404);
      await answer(second, b.requestId, { action: 'accept', content: { answer: 'two' } });
      await answer(first, a.requestId, { action: 'accept', content: { answer: 'one' } });
      expect(outputs(await waitForStatus(airlock, first, ['completed'], 20_000))).to.deep.equal(['label=first action=accept answer=one']);
      expect(outputs(await waitForStatus(airlock, second, ['completed'], 20_000))).to.deep.equal(['label=second action=accept answer=two']);
    });

    it('refuses (declines) a request tied to no call while several tasks have calls in flight, and logs it', async () => {
      const waiting = await create(script(['ask__ask', { label: 'waiting' }]), { ASK: '1' });
      const [pending] = (await pendingInputs(waiting)).pendingInputs;
      const stray = await create(script(['ask__ask_unrelated', { label: 'stray' }]), { ASK: '1' });
      const done = await waitForStatus(airlock, stray, ['completed', 'failed'], 20_000);
      expect(outputs(done)).to.deep.equal(['label=stray action=decline answer=']);
      expect(framesOf(await eventsOf(stray), 'input_required')).to.deep.equal([]);
      const warning = airlock.logs.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'refused an MCP server request that belongs to no tool call in flight');
      expect(warning).to.deep.include({ level: 40, server: 'ask', method: 'elicitation/create' });
      expect(warning.reason).to.match(/several tasks/);

      expect((await airlock.api(`/tasks/${waiting}`)).body.data.pendingInputs.map((p: any) => p.requestId)).to.deep.equal([pending.requestId]);
      await answer(waiting, pending.requestId, { action: 'accept', content: { answer: 'still here' } });
      expect(outputs(await waitForStatus(airlock, waiting, ['completed'], 20_000))).to.deep.equal(['label=waiting action=accept answer=still here']);
    });

    it('a request tied to no call is the task\'s when only that task has calls in flight', async () => {
      const id = await create(script(['ask__ask_unrelated', { label: 'alone' }]), { ASK: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      expect(pending).to.deep.include({ server: 'ask', message: 'Answer for alone', callId: 'toolu_scripted_1' });
      await answer(id, pending.requestId, { action: 'accept', content: { answer: 'mine' } });
      expect(outputs(await waitForStatus(airlock, id, ['completed'], 20_000))).to.deep.equal(['label=alone action=accept answer=mine']);
    });

    it('the time a person takes does not count against the tool\'s timeout', async () => {
      const id = await create(script(['ask__ask', { label: 'slow' }]), { ASK: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      await new Promise((resolve) => setTimeout(resolve, ASK_TOOL_TIMEOUT_MS * 1.5));
      await answer(id, pending.requestId, { action: 'accept', content: { answer: 'eventually' } });
      const done = await waitForStatus(airlock, id, ['completed'], 20_000);
      expect(outputs(done)).to.deep.equal(['label=slow action=accept answer=eventually']);
    });

    it('cancelling the task answers the server with cancel and cancels the task', async () => {
      const label = `cancelled-${randomUUID()}`;
      const id = await create(script(['ask__ask', { label }]), { ASK: '1' });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      const del = await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
      expect(del.status, del.text).to.equal(200);
      const task = await waitForStatus(airlock, id, ['cancelled']);
      expect(task).not.to.have.property('pendingInputs');
      await waitFor(() => ask.answers.entries.find((entry) => entry.label === label), 'the server to get its answer');
      expect(ask.answers.entries.find((entry) => entry.label === label)).to.deep.equal({ tool: 'ask', label, action: 'cancel' });
      const frames = await eventsOf(id);
      expect(framesOf(frames, 'input_resolved')).to.deep.equal([{ requestId: pending.requestId, action: 'cancel', reason: 'Task cancelled', answeredBy: 'system' }]);
      expect(frames.at(-1)!.data).to.deep.equal({ code: 'CANCELLED', message: 'Task cancelled' });
      const late = await answer(id, pending.requestId, { action: 'decline' });
      expect([late.status, late.body.error.code]).to.deep.equal([409, 'CONFLICT']);
    });

    it('scrubs secrets from the answer in events; the server gets the real value', async () => {
      const secret = `tok-${randomUUID()}`;
      const label = `secret-${randomUUID()}`;
      const id = await create(script(['ask__ask', { label }]), { ASK: '1' }, { secrets: { API_TOKEN: secret } });
      const [pending] = (await pendingInputs(id)).pendingInputs;
      await answer(id, pending.requestId, { action: 'accept', content: { answer: secret } });
      const done = await waitForStatus(airlock, id, ['completed'], 20_000);
      expect(ask.answers.entries.find((entry) => entry.label === label)!.content).to.deep.equal({ answer: secret });
      expect(outputs(done)).to.deep.equal([`label=${label} action=accept answer=[secret:API_TOKEN]`]);
      const frames = await eventsOf(id);
      expect(framesOf(frames, 'input_resolved')[0].content).to.deep.equal({ answer: '[secret:API_TOKEN]' });
      expect(JSON.stringify(frames)).not.to.include(secret);
    });
  });

  describe('a server that floods requests (ask fixture, no tool timeout)', () => {
    it(`keeps ${MAX_SERVER_REQUESTS_WAITING} waiting per task and declines the rest at once, with no event for them`, async () => {
      const id = await create(script(['flood__ask_many', { count: 500 }]), { FLOOD: 'flood' });
      await pendingInputs(id, MAX_SERVER_REQUESTS_WAITING);
      // Answer whatever waits until the call ends: an answer frees a place, which a request the
      // server has not had refused yet may take.
      let mostWaiting = 0;
      let done: any;
      for (;;) {
        const { body } = await airlock.api(`/tasks/${id}`);
        done = body.data;
        if (['completed', 'failed', 'cancelled'].includes(done.status)) break;
        const waiting = done.pendingInputs ?? [];
        mostWaiting = Math.max(mostWaiting, waiting.length);
        for (const input of waiting) await answer(id, input.requestId, { action: 'accept', content: { answer: 'yes' } });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      done = await waitForStatus(airlock, id, ['completed'], 20_000);
      expect(mostWaiting).to.equal(MAX_SERVER_REQUESTS_WAITING);
      const tally = Object.fromEntries(outputs(done)[0]!.split(' ').map((pair) => pair.split('=')).map(([k, v]) => [k, Number(v)]));
      expect(Object.keys(tally).sort(), outputs(done)[0]).to.deep.equal(['accept', 'decline']);
      const { accept: accepted, decline: declined } = tally as { accept: number; decline: number };
      expect(accepted + declined).to.equal(500);
      expect(accepted).to.be.at.least(MAX_SERVER_REQUESTS_WAITING).and.below(50);
      const frames = await eventsOf(id);
      expect(framesOf(frames, 'input_required')).to.have.length(accepted);
      expect(frames.length, 'events stored for the task').to.be.below(3 * 50);
    });
  });

  describe('sampling (server-everything trigger-sampling-request)', () => {
    const SAMPLE = (server: string) => `${server}__trigger-sampling-request`;
    const prompt = (reply: string) => `\n/reply ${reply}`;

    it('allow: the task\'s model answers, the reply comes back in the tool result, and its tokens count', async () => {
      const id = await create(script([SAMPLE('everything'), { prompt: prompt('Sampled: forty-two'), maxTokens: 50 }]), { EVERYTHING: '1' });
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.status, JSON.stringify(done.error)).to.equal('completed');
      const [output] = outputs(done);
      expect(output).to.include('LLM sampling result');
      const result = JSON.parse(output!.slice(output!.indexOf('{')));
      expect(result).to.deep.equal({ role: 'assistant', content: { type: 'text', text: 'Sampled: forty-two' }, model: 'scripted', stopReason: 'endTurn' });

      const frames = await eventsOf(id);
      const sampling = framesOf(frames, 'tool_call').filter((c) => c.toolName === 'sampling');
      expect(sampling).to.have.length(1);
      expect(sampling[0]).to.deep.include({ server: 'everything', status: 'executing', parentCallId: 'toolu_scripted_1' });
      expect(sampling[0].callId).to.match(/^smp_[0-9a-f]{32}$/);
      expect(sampling[0].args).to.deep.include({ systemPrompt: 'You are a helpful test server.', maxTokens: 50 });
      expect(framesOf(frames, 'tool_result').find((r) => r.callId === sampling[0].callId)).to.deep.equal({ callId: sampling[0].callId, status: 'success', output: 'Sampled: forty-two' });
      expect(statuses(frames)).not.to.include('awaiting_approval');
      // The sampling call is not an agent turn (its tokens are counted: see the TaskServerRequests unit test).
      expect(done.usage.turns).to.equal(2);
    });

    it('ask: the request is a pending approval (callId = its id) until approved; then the model answers', async () => {
      const id = await create(script([SAMPLE('asker'), { prompt: prompt('Approved sample'), maxTokens: 20 }]), { ASKER: '1' });
      const task = await waitFor(async () => {
        const { body } = await airlock.api(`/tasks/${id}`);
        return body.data.pendingApprovals?.length ? body.data : undefined;
      }, 'the sampling request to wait for approval', 20_000);
      expect(task.status).to.equal('awaiting_approval');
      const [pending] = task.pendingApprovals;
      expect(pending).to.deep.include({ toolName: 'sampling', server: 'asker', tool: 'sampling/createMessage' });
      expect(pending.callId).to.match(/^smp_/);
      expect(pending.args.messages[0].content.text).to.include('/reply Approved sample');
      expect(pending.args.maxTokens).to.equal(20);

      const res = await airlock.api(`/tasks/${id}/tools/${pending.callId}/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      expect(res.body.data).to.deep.equal({ approved: true });
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(outputs(done)[0]).to.include('"text": "Approved sample"');
      const [audit] = (await airlock.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(audit).to.deep.include({ callId: pending.callId, toolName: 'sampling', server: 'asker', tool: 'sampling/createMessage', status: 'approved', policy: 'a person checks model use' });
    });

    it('ask, declined: the server gets an error and the tool result shows it', async () => {
      const id = await create(script([SAMPLE('asker'), { prompt: prompt('never'), maxTokens: 20 }]), { ASKER: '1' });
      const task = await waitFor(async () => {
        const { body } = await airlock.api(`/tasks/${id}`);
        return body.data.pendingApprovals?.length ? body.data : undefined;
      }, 'the sampling request to wait for approval', 20_000);
      await airlock.api(`/tasks/${id}/tools/${task.pendingApprovals[0].callId}/approve`, { method: 'POST', json: { outcome: 'cancel', reason: 'not today' } });
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.output.toolCalls[0]).to.include({ callId: 'toolu_scripted_1', status: 'error' });
      expect(outputs(done)[0]).to.include('The user declined this sampling request: not today');
    });

    it('deny: the model is never asked; the server gets an error that the tool result shows', async () => {
      const id = await create(script([SAMPLE('denied'), { prompt: prompt('never'), maxTokens: 20 }]), { DENIED: '1' });
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.status).to.equal('completed');
      const [call] = done.output.toolCalls.filter((c: any) => c.callId === 'toolu_scripted_1');
      expect(call.status).to.equal('error');
      expect(call.output).to.include(`The sampling request was denied by policy: ${SAMPLING_DENY_REASON}`);
      const frames = await eventsOf(id);
      const sampling = framesOf(frames, 'tool_call').filter((c) => c.toolName === 'sampling');
      expect(sampling.map((c) => c.status)).to.deep.equal(['error']);
      expect(statuses(frames)).not.to.include('awaiting_approval');
    });
  });

  // The stored events of a task that is still live (a stream with ?after=0 would wait for its end).
  async function eventsOfLive(id: string): Promise<SseFrame[]> {
    const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
    try {
      await stream.waitFor((f) => f.event === 'input_required');
      return [...stream.frames];
    } finally {
      stream.close();
    }
  }
});

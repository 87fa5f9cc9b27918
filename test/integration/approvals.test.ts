import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEchoServer } from '../../fixtures/mcp/echoServer.js';
import { textResult } from '../../fixtures/mcp/fixtureSupport.js';
import { startAskHttpServer } from '../../fixtures/mcp/askServer.js';
import { startSessionfulHttp } from '../../fixtures/mcp/sessionfulHttp.js';
import type { ContentBlock, ModelClient, ModelRequest, ModelStreamEvent } from '../../src/model/modelClient.js';
import { ScriptedModelClient } from '../../src/model/scriptedModelClient.js';
import { approvalDigest } from '../../src/runtime/approvals/approvalGate.js';
import { createApiKey, hashApiKey } from '../../src/runtime/security/apiKeys.js';
import { APPROVAL_META_KEY } from '../../src/runtime/runs/toolCalls.js';
import { startTestAirlock, TEST_KEY, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { FakeToolRouter, text } from '../support/fakes.js';
import { script, startWithServers } from '../support/mcpHarness.js';
import { downgradeToSchema5 } from '../support/schema5.js';
import { openSse, readSse } from '../support/sse.js';
import type { SseFrame } from '../support/sse.js';

/**
 * The scripted model, recording every request, plus one extension for parallel calls: a line
 * `/parallel [["tool", {args}], …]` makes the first turn call all of them at once; once their
 * results are in, the model answers "parallel done".
 */
class ApprovalTestModel implements ModelClient {
  readonly description = 'approval-test';
  readonly requests: ModelRequest[] = [];
  private readonly scripted = new ScriptedModelClient();

  stream(request: ModelRequest): AsyncIterable<ModelStreamEvent> {
    this.requests.push({ ...request, messages: structuredClone(request.messages) });
    const first = request.messages[0]?.content.find((b) => b.type === 'text');
    const line = first?.type === 'text' ? first.text.split('\n').find((l) => l.startsWith('/parallel ')) : undefined;
    if (!line) return this.scripted.stream(request);
    const calls = JSON.parse(line.slice('/parallel '.length)) as [string, Record<string, unknown>][];
    const answered = request.messages.some((m) => m.content.some((b) => b.type === 'tool_use'));
    return (async function* (): AsyncGenerator<ModelStreamEvent> {
      const usage = { inputTokens: 1, outputTokens: 1 };
      if (answered) {
        yield { type: 'turn_end', content: [{ type: 'text', text: 'parallel done' }], stopReason: 'end_turn', usage };
        return;
      }
      const content: ContentBlock[] = calls.map(([name, input], i) => ({ type: 'tool_use', id: `toolu_par_${i + 1}`, name, input }));
      yield { type: 'turn_end', content, stopReason: 'tool_use', usage };
    })();
  }

  /** The tool_result blocks of the latest request of the task whose first message contains `marker`. */
  toolResultsSeen(marker: string): Extract<ContentBlock, { type: 'tool_result' }>[] {
    const requests = this.requests.filter((r) => JSON.stringify(r.messages[0]).includes(marker));
    const last = requests.at(-1);
    if (!last) throw new Error(`the model never saw a task with ${marker}`);
    return last.messages.flatMap((m) => m.content.filter((b): b is Extract<ContentBlock, { type: 'tool_result' }> => b.type === 'tool_result'));
  }
}

const COUNT_SCHEMA = { type: 'object', properties: { n: { type: 'integer' }, tag: { type: 'string' } }, required: ['n'] };
const DENY_REASON = 'destructive tools are off in this project';

/** What the fake tools ran, each call with its tool name and arguments. */
interface Ran {
  tool: string;
  args: Record<string, unknown>;
  approvalId?: unknown;
}

async function writeConfig(project: Record<string, unknown>): Promise<{ dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-approvals-config-'));
  const path = join(dir, 'airlock.config.json');
  // A short shutdown grace: a test that fails with a call still waiting must not hold stop() for 10 s.
  await writeFile(path, JSON.stringify({ server: { shutdownGraceMs: 100 }, tasks: { concurrency: 32 }, projects: { default: project } }));
  return { dir, path };
}

describe('Approval gate through the task API (API.md section 7)', function () {
  this.timeout(30_000);

  let airlock: TestAirlock;
  let configDir: string;
  let model: ApprovalTestModel;
  let tools: FakeToolRouter;
  let apiKeyId: string;
  const ran: Ran[] = [];
  let tags = 0;

  const record = (tool: string) => (args: Record<string, unknown>, context: { meta?: Record<string, unknown> }) => {
    ran.push({ tool, args, approvalId: context.meta?.['io.airlock/approvalId'] });
    return text(`${tool} ran with ${JSON.stringify(args)}`);
  };

  before(async () => {
    model = new ApprovalTestModel();
    tools = new FakeToolRouter({
      plain: { server: 'files', handler: record('plain') },
      other: { server: 'files', handler: record('other') },
      count: { server: 'files', inputSchema: COUNT_SCHEMA, handler: record('count') },
      delete_everything: { server: 'files', handler: record('delete_everything') },
      asked: { server: 'files', handler: record('asked') },
      allowed: { server: 'files', handler: record('allowed') },
      reader: { server: 'files', annotations: { readOnlyHint: true }, handler: record('reader') },
      writer: { server: 'files', annotations: { readOnlyHint: false }, handler: record('writer') },
    });
    const config = await writeConfig({
      trustAnnotations: true,
      toolPolicies: [
        { server: 'files', tool: 'delete_*', decision: 'deny', reason: DENY_REASON },
        { server: 'fil*', tool: 'asked', decision: 'ask', reason: 'a person checks these' },
        { tool: 'allowed', decision: 'allow' },
      ],
    });
    configDir = config.dir;
    airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: config.path }, overrides: { toolRouter: tools, modelFor: () => model } });
    apiKeyId = (await airlock.store.findApiKeyByHash(hashApiKey(TEST_KEY)))!.id;
  });

  after(async () => {
    await airlock?.stop();
    await rm(configDir, { recursive: true, force: true });
    expect(tools.unexpected).to.deep.equal([]);
  });

  // Every test tags its calls, so that what ran can be told apart across tests.
  const newTag = () => `tag-${++tags}-${randomUUID().slice(0, 8)}`;
  const ranWith = (tag: string) => ran.filter((r) => r.args.tag === tag);

  async function create(message: string, autoExecute: boolean): Promise<string> {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message, autoExecute } });
    expect(res.status, res.text).to.equal(201);
    return res.body.data.id;
  }

  /** Waits until the task lists the pending call `callId` (awaiting_approval), returning the task. */
  async function pendingCall(id: string, callId: string): Promise<any> {
    return waitFor(async () => {
      const { body } = await airlock.api(`/tasks/${id}`);
      return body.data.status === 'awaiting_approval' && body.data.pendingApprovals?.some((p: { callId: string }) => p.callId === callId) ? body.data : undefined;
    }, `call ${callId} of task ${id} to await approval`);
  }

  const approve = (id: string, callId: string, json: unknown, key?: string) =>
    airlock.api(`/tasks/${id}/tools/${callId}/approve`, { method: 'POST', json, ...(key ? { key } : {}) });

  async function auditOf(id: string): Promise<any[]> {
    const res = await airlock.api(`/tasks/${id}/approvals`);
    expect(res.status, res.text).to.equal(200);
    return res.body.data.approvals;
  }

  async function eventsOf(id: string): Promise<SseFrame[]> {
    return (await readSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` })).frames;
  }

  const statuses = (frames: SseFrame[]) => frames.filter((f) => f.event === 'status').map((f) => f.data.status);
  const toolCallFrames = (frames: SseFrame[]) => frames.filter((f) => f.event === 'tool_call').map((f) => f.data);
  const toolResultFrames = (frames: SseFrame[]) => frames.filter((f) => f.event === 'tool_result').map((f) => f.data);

  describe('autoExecute false', () => {
    it('waits for approval, lists the pending call, runs it once on proceed_once and records who approved', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
      try {
        const asked = await stream.waitFor((f) => f.event === 'tool_call' && f.data.status === 'awaiting_approval');
        expect(asked.data).to.deep.equal({ callId: 'toolu_scripted_1', toolName: 'plain', server: 'files', args: { tag }, status: 'awaiting_approval', approvalId: asked.data.approvalId });
        expect(asked.data.approvalId).to.match(/^apr_[0-9a-f]{32}$/);

        const task = await pendingCall(id, 'toolu_scripted_1');
        expect(task.status).to.equal('awaiting_approval');
        expect(task.pendingApprovals).to.have.length(1);
        const [pending] = task.pendingApprovals;
        expect(pending).to.have.all.keys('callId', 'toolName', 'args', 'server', 'tool', 'requestedAt');
        expect(pending).to.deep.include({ callId: 'toolu_scripted_1', toolName: 'plain', args: { tag }, server: 'files', tool: 'plain' });
        expect(Date.parse(pending.requestedAt)).to.be.closeTo(Date.now(), 10_000);
        expect(task.output.toolCalls).to.deep.equal([{ callId: 'toolu_scripted_1', toolName: 'plain', server: 'files', approvalId: asked.data.approvalId, status: 'awaiting_approval', args: { tag } }]);
        expect(ranWith(tag), 'the tool ran before anyone approved').to.deep.equal([]);

        const res = await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' });
        expect(res.status, res.text).to.equal(200);
        expect(res.body).to.deep.equal({ success: true, data: { approved: true } });

        const done = await waitForStatus(airlock, id, ['completed', 'failed']);
        expect(done.status, JSON.stringify(done.error)).to.equal('completed');
        expect(done).not.to.have.property('pendingApprovals');
        expect(ranWith(tag)).to.deep.equal([{ tool: 'plain', args: { tag }, approvalId: asked.data.approvalId }]);

        await stream.ended;
        const frames = stream.frames;
        expect(statuses(frames)).to.deep.equal(['running', 'connecting', 'processing', 'awaiting_approval', 'running', 'processing', 'completed']);
        expect(toolCallFrames(frames).map((c) => [c.status, c.approvalId])).to.deep.equal([['awaiting_approval', asked.data.approvalId], ['executing', asked.data.approvalId]]);
        expect(toolResultFrames(frames)).to.deep.equal([{ callId: 'toolu_scripted_1', status: 'success', output: `plain ran with ${JSON.stringify({ tag })}`, approvalId: asked.data.approvalId }]);
        // The awaiting_approval status is sent before the tool_call that caused it.
        const order = frames.map((f) => (f.event === 'status' ? `status:${f.data.status}` : f.event === 'tool_call' ? `tool_call:${f.data.status}` : f.event));
        expect(order.indexOf('status:awaiting_approval')).to.be.lessThan(order.indexOf('tool_call:awaiting_approval'));

        const audit = await auditOf(id);
        expect(audit).to.have.length(1);
        const [entry] = audit;
        expect(entry).not.to.have.property('taskId');
        expect(entry).to.deep.include({
          id: asked.data.approvalId, callId: 'toolu_scripted_1', toolName: 'plain', server: 'files', tool: 'plain', args: { tag },
          status: 'approved', outcome: 'proceed_once', reason: null, decidedBy: `key:${apiKeyId}`, argsEdited: false, expiresAt: null,
        });
        expect(entry.digest).to.match(/^[0-9a-f]{64}$/);
        expect(entry.digest).to.equal(approvalDigest('files', 'plain', { tag }));
        expect(Date.parse(entry.decidedAt)).to.be.at.least(Date.parse(entry.requestedAt));
      } finally {
        stream.close();
      }
    });

    it('proceed_always: later calls of the same tool in the task run without asking; other tools still ask', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag, i: 1 }], ['plain', { tag, i: 2 }], ['other', { tag, i: 3 }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      expect((await approve(id, 'toolu_scripted_1', { outcome: 'proceed_always' })).body.data).to.deep.equal({ approved: true });
      // The third call is another tool: it asks again.
      await pendingCall(id, 'toolu_scripted_3');
      expect(ranWith(tag).map((r) => r.args.i)).to.deep.equal([1, 2]);
      expect((await approve(id, 'toolu_scripted_3', { outcome: 'proceed_once' })).status).to.equal(200);
      expect((await waitForStatus(airlock, id, ['completed', 'failed'])).status).to.equal('completed');
      expect(ranWith(tag).map((r) => [r.tool, r.args.i])).to.deep.equal([['plain', 1], ['plain', 2], ['other', 3]]);

      const audit = await auditOf(id);
      expect(audit.map((a) => [a.callId, a.outcome, a.status])).to.deep.equal([['toolu_scripted_1', 'proceed_always', 'approved'], ['toolu_scripted_3', 'proceed_once', 'approved']]);
      const frames = await eventsOf(id);
      expect(toolCallFrames(frames).map((c) => [c.callId, c.status])).to.deep.equal([
        ['toolu_scripted_1', 'awaiting_approval'], ['toolu_scripted_1', 'executing'],
        ['toolu_scripted_2', 'executing'],
        ['toolu_scripted_3', 'awaiting_approval'], ['toolu_scripted_3', 'executing'],
      ]);
      expect(toolCallFrames(frames).find((c) => c.callId === 'toolu_scripted_2')).not.to.have.property('approvalId');
      expect(statuses(frames).filter((s) => s === 'awaiting_approval')).to.have.length(2);
    });

    it('proceed_always holds for its task only: another task asks again', async () => {
      const tag = newTag();
      const first = await create(script(['plain', { tag }]), false);
      await pendingCall(first, 'toolu_scripted_1');
      await approve(first, 'toolu_scripted_1', { outcome: 'proceed_always' });
      await waitForStatus(airlock, first, ['completed']);
      const second = await create(script(['plain', { tag }]), false);
      await pendingCall(second, 'toolu_scripted_1');
      expect(ranWith(tag)).to.have.length(1);
      await approve(second, 'toolu_scripted_1', { outcome: 'proceed_once' });
      await waitForStatus(airlock, second, ['completed']);
      expect(ranWith(tag)).to.have.length(2);
    });

    it('cancel with a reason: the tool never runs, the model is told it was declined and why', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const res = await approve(id, 'toolu_scripted_1', { outcome: 'cancel', reason: 'not on a Friday' });
      expect(res.status, res.text).to.equal(200);
      expect(res.body.data).to.deep.equal({ approved: false });
      const done = await waitForStatus(airlock, id, ['completed', 'failed']);
      expect(done.status).to.equal('completed');
      expect(ranWith(tag)).to.deep.equal([]);

      const [seen, ...more] = model.toolResultsSeen(tag);
      expect(more).to.deep.equal([]);
      expect(seen!.toolUseId).to.equal('toolu_scripted_1');
      expect(seen!.isError).to.equal(true);
      const said = seen!.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
      expect(said).to.include('declined');
      expect(said).to.include('not on a Friday');

      const frames = await eventsOf(id);
      const [result] = toolResultFrames(frames);
      expect(result).to.include({ callId: 'toolu_scripted_1', status: 'cancelled' });
      expect(result.output).to.include('declined').and.to.include('not on a Friday');
      expect(result.approvalId).to.match(/^apr_/);
      expect(toolCallFrames(frames).map((c) => c.status)).to.deep.equal(['awaiting_approval']);
      expect(done.output.toolCalls[0]).to.include({ status: 'cancelled' });

      const [entry] = await auditOf(id);
      expect(entry).to.include({ status: 'rejected', outcome: 'cancel', reason: 'not on a Friday', decidedBy: `key:${apiKeyId}`, argsEdited: false });
    });

    it('cancel without a reason still tells the model it was declined', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      expect((await approve(id, 'toolu_scripted_1', { outcome: 'cancel' })).body.data).to.deep.equal({ approved: false });
      await waitForStatus(airlock, id, ['completed']);
      const [seen] = model.toolResultsSeen(tag);
      expect(JSON.stringify(seen!.content)).to.include('declined');
      expect((await auditOf(id))[0]).to.include({ status: 'rejected', reason: null });
    });
  });

  describe('edited arguments', () => {
    it('runs the tool with valid edited arguments, tells the model, and records argsEdited', async () => {
      const tag = newTag();
      const id = await create(script(['count', { n: 1, tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const res = await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once', args: { n: 42, tag } });
      expect(res.status, res.text).to.equal(200);
      expect(res.body.data).to.deep.equal({ approved: true });
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag).map((r) => r.args)).to.deep.equal([{ n: 42, tag }]);

      const [entry] = await auditOf(id);
      expect(entry).to.include({ status: 'approved', argsEdited: true });
      expect(entry.editedArgs).to.deep.equal({ n: 42, tag });
      // The audit keeps what was asked about, and the digest is bound to it.
      expect(entry.args).to.deep.equal({ n: 1, tag });
      expect(entry.digest).to.equal(approvalDigest('files', 'count', { n: 1, tag }));

      const [seen] = model.toolResultsSeen(tag);
      const said = seen!.content.map((b) => (b.type === 'text' ? b.text : '')).join('\n');
      expect(said).to.match(/changed the arguments/);
      expect(said).to.include('"n":42');
      const frames = await eventsOf(id);
      expect(toolCallFrames(frames).map((c) => [c.status, c.args])).to.deep.equal([['awaiting_approval', { n: 1, tag }], ['executing', { n: 42, tag }]]);
    });

    it('refuses edited arguments the tool\'s schema rejects with VALIDATION_ERROR and details; the call stays pending', async () => {
      const tag = newTag();
      const id = await create(script(['count', { n: 1, tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const bad = await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once', args: { n: 'three', tag } });
      expect(bad.status, bad.text).to.equal(400);
      expect(bad.body.error.code).to.equal('VALIDATION_ERROR');
      expect(bad.body.error.details).to.deep.include({ path: '/args/n', message: 'must be integer' });
      const missing = await approve(id, 'toolu_scripted_1', { outcome: 'proceed_always', args: { tag } });
      expect(missing.status).to.equal(400);
      expect(missing.body.error.details.map((d: { path: string }) => d.path)).to.deep.equal(['/args']);
      expect(missing.body.error.details[0].message).to.match(/n/);

      const still = await airlock.api(`/tasks/${id}`);
      expect(still.body.data.status).to.equal('awaiting_approval');
      expect(still.body.data.pendingApprovals.map((p: { callId: string }) => p.callId)).to.deep.equal(['toolu_scripted_1']);
      expect((await auditOf(id))[0]).to.include({ status: 'pending', outcome: null, decidedBy: null });
      expect(ranWith(tag)).to.deep.equal([]);

      expect((await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' })).status).to.equal(200);
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag).map((r) => r.args)).to.deep.equal([{ n: 1, tag }]);
      expect((await auditOf(id))[0]).to.include({ status: 'approved', argsEdited: false });
    });
  });

  it('five concurrent approvals of one call: one 200, four CONFLICT, and the tool runs once', async () => {
    const tag = newTag();
    const id = await create(script(['plain', { tag }]), false);
    await pendingCall(id, 'toolu_scripted_1');
    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => approve(id, 'toolu_scripted_1', { outcome: i % 2 ? 'proceed_always' : 'proceed_once' })));
    expect(answers.map((a) => a.status).sort()).to.deep.equal([200, 409, 409, 409, 409]);
    for (const answer of answers.filter((a) => a.status === 409)) expect(answer.body.error.code).to.equal('CONFLICT');
    await waitForStatus(airlock, id, ['completed']);
    expect(ranWith(tag)).to.have.length(1);
    const audit = await auditOf(id);
    expect(audit).to.have.length(1);
    expect(audit[0].status).to.equal('approved');
    expect(toolCallFrames(await eventsOf(id)).filter((c) => c.status === 'executing')).to.have.length(1);
  });

  describe('project tool policies', () => {
    it('deny: the call never runs, even with autoExecute true; the model and the stream get the rule\'s reason', async () => {
      for (const autoExecute of [true, false]) {
        const tag = newTag();
        const id = await create(script(['delete_everything', { tag }]), autoExecute);
        const done = await waitForStatus(airlock, id, ['completed', 'failed']);
        expect(done.status).to.equal('completed');
        expect(ranWith(tag)).to.deep.equal([]);
        const frames = await eventsOf(id);
        expect(statuses(frames)).not.to.include('awaiting_approval');
        expect(toolCallFrames(frames)).to.deep.equal([{ callId: 'toolu_scripted_1', toolName: 'delete_everything', server: 'files', args: { tag }, status: 'error' }]);
        const [result] = toolResultFrames(frames);
        expect(result).to.include({ callId: 'toolu_scripted_1', status: 'error' });
        expect(result.output).to.include(DENY_REASON);
        const [seen] = model.toolResultsSeen(tag);
        expect(seen!.isError).to.equal(true);
        expect(JSON.stringify(seen!.content)).to.include(DENY_REASON);
        expect(await auditOf(id)).to.deep.equal([]);
        expect((await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' })).body.error.code).to.equal('NOT_FOUND');
      }
    });

    it('ask: waits for approval even with autoExecute true', async () => {
      const tag = newTag();
      const id = await create(script(['asked', { tag }]), true);
      await pendingCall(id, 'toolu_scripted_1');
      expect(ranWith(tag)).to.deep.equal([]);
      await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' });
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag)).to.have.length(1);
    });

    it('allow: runs without asking even with autoExecute false, with no approval id', async () => {
      const tag = newTag();
      const id = await create(script(['allowed', { tag }]), false);
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag)).to.deep.equal([{ tool: 'allowed', args: { tag }, approvalId: undefined }]);
      const frames = await eventsOf(id);
      expect(statuses(frames)).not.to.include('awaiting_approval');
      expect(toolCallFrames(frames).map((c) => c.status)).to.deep.equal(['executing']);
      expect(toolCallFrames(frames)[0]).not.to.have.property('approvalId');
      expect(await auditOf(id)).to.deep.equal([]);
    });

    it('trustAnnotations: a readOnlyHint tool runs without asking with autoExecute false; readOnlyHint false still asks', async () => {
      const tag = newTag();
      const id = await create(script(['reader', { tag }], ['writer', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_2');
      expect(ranWith(tag).map((r) => r.tool)).to.deep.equal(['reader']);
      await approve(id, 'toolu_scripted_2', { outcome: 'proceed_once' });
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag).map((r) => r.tool)).to.deep.equal(['reader', 'writer']);
      expect((await auditOf(id)).map((a) => a.tool)).to.deep.equal(['writer']);
    });

    it('no rule and autoExecute true: runs without asking', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), true);
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag)).to.have.length(1);
      expect(await auditOf(id)).to.deep.equal([]);
    });
  });

  describe('streams while a call waits', () => {
    it('re-sends the pending call as tool_call awaiting_approval in the catch-up after history_done, then goes on live', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const [audit] = await auditOf(id);
      const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream`, { authorization: `Bearer ${airlock.key}` });
      try {
        const caught = await stream.waitFor((f) => f.event === 'tool_call');
        const events = stream.frames.map((f) => f.event);
        expect(events.indexOf('history_done')).to.be.lessThan(events.indexOf('tool_call'));
        expect(stream.frames.find((f) => f.event === 'history_done')!.data).to.deep.equal({ messageCount: 1, isStreaming: true });
        expect(caught.data).to.deep.equal({ callId: 'toolu_scripted_1', toolName: 'plain', server: 'files', status: 'awaiting_approval', args: { tag }, approvalId: audit.id });

        await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' });
        await stream.ended;
        const live = stream.frames.slice(stream.frames.indexOf(caught) + 1);
        expect(live.map((f) => f.event)).to.include.members(['tool_call', 'tool_result', 'done']);
        expect(live.find((f) => f.event === 'tool_call')!.data).to.include({ status: 'executing', approvalId: audit.id });
        expect(live.at(-1)!.event).to.equal('done');
      } finally {
        stream.close();
      }
    });

    it('a resume with Last-Event-ID gets the awaiting_approval event it missed, and later ones once, live', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const url = `${airlock.url}/api/v1/tasks/${id}/stream`;
      const auth = { authorization: `Bearer ${airlock.key}` };

      const all = await openSse(`${url}?after=0`, auth);
      const asked = await all.waitFor((f) => f.event === 'tool_call' && f.data.status === 'awaiting_approval');
      all.close();

      const missed = await openSse(url, { ...auth, 'last-event-id': String(asked.id - 1) });
      const resumed = await openSse(url, { ...auth, 'last-event-id': String(asked.id) });
      try {
        const again = await missed.waitFor((f) => f.event === 'tool_call');
        expect(missed.frames[0]).to.equal(again);
        expect(again.id).to.equal(asked.id);
        expect(again.data).to.deep.equal(asked.data);

        await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' });
        await Promise.all([missed.ended, resumed.ended]);
        expect(resumed.frames.every((f) => f.id > asked.id)).to.equal(true);
        expect(resumed.frames.map((f) => f.event)).not.to.include('history_done');
        expect(toolCallFrames(resumed.frames).map((c) => c.status)).to.deep.equal(['executing']);
        expect(resumed.frames.at(-1)!.event).to.equal('done');
        const ids = missed.frames.map((f) => f.id);
        expect(new Set(ids).size, 'no event repeated').to.equal(ids.length);
        expect(missed.frames.slice(1)).to.deep.equal(resumed.frames);
      } finally {
        missed.close();
        resumed.close();
      }
    });
  });

  describe('errors and access', () => {
    it('another project\'s key gets NOT_FOUND for approve and the audit trail; the call stays pending', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const other = await createApiKey(airlock.store, { projectId: 'other' });
      const res = await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' }, other.key);
      expect(res.status).to.equal(404);
      expect(res.body.error.code).to.equal('NOT_FOUND');
      const audit = await airlock.api(`/tasks/${id}/approvals`, { key: other.key });
      expect(audit.status).to.equal(404);
      expect(audit.body.error.code).to.equal('NOT_FOUND');
      expect(audit.text).not.to.include(tag);
      expect((await auditOf(id))[0]).to.include({ status: 'pending' });
      expect(ranWith(tag)).to.deep.equal([]);
      await approve(id, 'toolu_scripted_1', { outcome: 'cancel' });
      await waitForStatus(airlock, id, ['completed']);
    });

    it('unknown task or call → NOT_FOUND; bad bodies → VALIDATION_ERROR; an already decided call → CONFLICT', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');

      const unknownCall = await approve(id, 'toolu_nope', { outcome: 'proceed_once' });
      expect([unknownCall.status, unknownCall.body.error.code]).to.deep.equal([404, 'NOT_FOUND']);
      const unknownTask = await approve(randomUUID(), 'toolu_scripted_1', { outcome: 'proceed_once' });
      expect([unknownTask.status, unknownTask.body.error.code]).to.deep.equal([404, 'NOT_FOUND']);
      const notUuid = await approve('not-a-task', 'toolu_scripted_1', { outcome: 'proceed_once' });
      expect(notUuid.body.error.code).to.equal('NOT_FOUND');
      expect((await airlock.api(`/tasks/${randomUUID()}/approvals`)).body.error.code).to.equal('NOT_FOUND');

      const badOutcome = await approve(id, 'toolu_scripted_1', { outcome: 'yes please' });
      expect(badOutcome.status).to.equal(400);
      expect(badOutcome.body.error.code).to.equal('VALIDATION_ERROR');
      expect(badOutcome.body.error.details.map((d: { path: string }) => d.path)).to.deep.equal(['/outcome']);
      for (const body of [{}, { outcome: 'proceed_once', extra: 1 }, { outcome: 'proceed_once', args: [1] }, { outcome: 'cancel', reason: 7 }, { outcome: 'cancel', reason: 'x'.repeat(2001) }]) {
        const res = await approve(id, 'toolu_scripted_1', body);
        expect(res.status, JSON.stringify(body)).to.equal(400);
        expect(res.body.error.code).to.equal('VALIDATION_ERROR');
      }
      const notJson = await airlock.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', body: 'outcome=proceed_once', headers: { 'content-type': 'text/plain' } });
      expect(notJson.body.error.code).to.equal('VALIDATION_ERROR');
      expect((await auditOf(id))[0]).to.include({ status: 'pending' });

      expect((await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' })).status).to.equal(200);
      for (const outcome of ['proceed_once', 'proceed_always', 'cancel']) {
        const again = await approve(id, 'toolu_scripted_1', { outcome });
        expect([again.status, again.body.error.code]).to.deep.equal([409, 'CONFLICT']);
      }
      await waitForStatus(airlock, id, ['completed']);
      const late = await approve(id, 'toolu_scripted_1', { outcome: 'cancel' });
      expect(late.body.error.code).to.equal('CONFLICT');
      expect(ranWith(tag)).to.have.length(1);
      expect((await auditOf(id))[0]).to.include({ status: 'approved', outcome: 'proceed_once' });
    });

    it('a call that ran without approval is NOT_FOUND for approve', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), true);
      await waitForStatus(airlock, id, ['completed']);
      expect((await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' })).body.error.code).to.equal('NOT_FOUND');
    });

    it('DELETE while awaiting approval cancels the task and closes the pending approval', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
      try {
        await stream.waitFor((f) => f.event === 'tool_call');
        const del = await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
        expect(del.status, del.text).to.equal(200);
        const task = await waitForStatus(airlock, id, ['cancelled']);
        expect(task).not.to.have.property('pendingApprovals');
        await stream.ended;
        expect(stream.frames.at(-1)!.event).to.equal('error');
        expect(stream.frames.at(-1)!.data.code).to.equal('CANCELLED');

        const [entry] = await auditOf(id);
        expect(entry).to.include({ status: 'cancelled', outcome: 'cancel', decidedBy: 'system' });
        expect(entry.decidedAt).to.be.a('string');
        const late = await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' });
        expect([late.status, late.body.error.code]).to.deep.equal([409, 'CONFLICT']);
        expect(ranWith(tag)).to.deep.equal([]);
        // The task, once cancelled, does not claim to be running again.
        expect(statuses(stream.frames)).to.deep.equal(['running', 'connecting', 'processing', 'awaiting_approval', 'cancelled']);
      } finally {
        stream.close();
      }
    });
    it('a call still waiting when its task is cancelled is reported cancelled, not awaiting_approval', async () => {
      const tag = newTag();
      const id = await create(script(['plain', { tag }]), false);
      await pendingCall(id, 'toolu_scripted_1');
      const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
      try {
        await stream.waitFor((f) => f.event === 'tool_call');
        expect((await airlock.api(`/tasks/${id}`, { method: 'DELETE' })).status).to.equal(200);
        await stream.ended;
        const task = await waitForStatus(airlock, id, ['cancelled']);
        // Nothing waits any more: the call must not be left showing awaiting_approval.
        expect(task.output.toolCalls.map((c: any) => [c.callId, c.status])).to.deep.equal([['toolu_scripted_1', 'cancelled']]);
        expect(toolResultFrames(stream.frames).map((r) => [r.callId, r.status])).to.deep.equal([['toolu_scripted_1', 'cancelled']]);
      } finally {
        stream.close();
      }
    });

    it('pending approvals, their events and the audit trail show secrets scrubbed; the tool gets the real value', async () => {
      const tag = newTag();
      const secret = `tok-${randomUUID()}`;
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['plain', { tag, token: secret }]), autoExecute: false, secrets: { API_TOKEN: secret } } });
      const id = res.body.data.id;
      const task = await pendingCall(id, 'toolu_scripted_1');
      expect(task.pendingApprovals[0].args).to.deep.equal({ tag, token: '[secret:API_TOKEN]' });
      const [pending] = await auditOf(id);
      expect(pending.args).to.deep.equal({ tag, token: '[secret:API_TOKEN]' });
      // The decision is bound to the exact arguments, which the digest alone carries.
      expect(pending.digest).to.equal(approvalDigest('files', 'plain', { tag, token: secret }));
      await approve(id, 'toolu_scripted_1', { outcome: 'proceed_once' });
      await waitForStatus(airlock, id, ['completed']);
      expect(ranWith(tag).map((r) => r.args)).to.deep.equal([{ tag, token: secret }]);
      const frames = await eventsOf(id);
      expect(JSON.stringify(frames)).not.to.include(secret);
      expect(JSON.stringify(await auditOf(id))).not.to.include(secret);
    });
  });

  describe('parallel calls in one model turn', () => {
    it('are all pending at once; the task stays awaiting_approval until the last is decided', async () => {
      const tag = newTag();
      const id = await create(`/parallel ${JSON.stringify([['plain', { tag, i: 1 }], ['count', { n: 2, tag }]])}`, false);
      const task = await waitFor(async () => {
        const { body } = await airlock.api(`/tasks/${id}`);
        return body.data.pendingApprovals?.length === 2 ? body.data : undefined;
      }, 'both calls to be pending');
      expect(task.status).to.equal('awaiting_approval');
      expect(task.pendingApprovals.map((p: any) => [p.callId, p.toolName, p.args])).to.have.deep.members([
        ['toolu_par_1', 'plain', { tag, i: 1 }], ['toolu_par_2', 'count', { n: 2, tag }],
      ]);
      expect(ranWith(tag)).to.deep.equal([]);

      expect((await approve(id, 'toolu_par_1', { outcome: 'proceed_once' })).status).to.equal(200);
      await waitFor(() => ranWith(tag).length === 1, 'the first call to run');
      await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.output?.toolCalls?.find((c: any) => c.callId === 'toolu_par_1' && c.output !== undefined), 'the first result');
      const between = (await airlock.api(`/tasks/${id}`)).body.data;
      expect(between.status).to.equal('awaiting_approval');
      expect(between.pendingApprovals.map((p: any) => p.callId)).to.deep.equal(['toolu_par_2']);

      expect((await approve(id, 'toolu_par_2', { outcome: 'cancel', reason: 'one is enough' })).body.data).to.deep.equal({ approved: false });
      const done = await waitForStatus(airlock, id, ['completed', 'failed']);
      expect(done.status).to.equal('completed');
      expect(done.output.content).to.equal('parallel done');
      expect(ranWith(tag).map((r) => r.tool)).to.deep.equal(['plain']);

      const seen = model.toolResultsSeen(tag);
      expect(seen.map((r) => [r.toolUseId, r.isError])).to.deep.equal([['toolu_par_1', false], ['toolu_par_2', true]]);
      expect(JSON.stringify(seen[1]!.content)).to.include('one is enough');

      const frames = await eventsOf(id);
      // One wait for the turn: awaiting_approval once, running again only when both are decided.
      expect(statuses(frames)).to.deep.equal(['running', 'connecting', 'processing', 'awaiting_approval', 'running', 'processing', 'completed']);
      const audit = await auditOf(id);
      expect(audit.map((a) => [a.callId, a.status])).to.have.deep.members([['toolu_par_1', 'approved'], ['toolu_par_2', 'rejected']]);
    });

    it('a stream connecting after one of them was declined sees that one as not executed', async () => {
      const tag = newTag();
      const id = await create(`/parallel ${JSON.stringify([['plain', { tag, i: 1 }], ['plain', { tag, i: 2 }]])}`, false);
      await pendingCall(id, 'toolu_par_2');
      await pendingCall(id, 'toolu_par_1');
      await approve(id, 'toolu_par_1', { outcome: 'cancel' });
      await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.output?.toolCalls?.find((c: any) => c.callId === 'toolu_par_1' && c.status === 'cancelled'), 'the first call to be cancelled');
      const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream`, { authorization: `Bearer ${airlock.key}` });
      try {
        await stream.waitFor((f) => f.event === 'tool_call' && f.data.callId === 'toolu_par_2');
        await stream.waitFor((f) => f.event === 'tool_result' && f.data.callId === 'toolu_par_1');
        const first = toolCallFrames(stream.frames).filter((c) => c.callId === 'toolu_par_1');
        expect(first.map((c) => c.status), 'a declined call never executed').not.to.include('executing');
        expect(toolResultFrames(stream.frames).find((r) => r.callId === 'toolu_par_1')).to.include({ status: 'cancelled' });
        expect(toolCallFrames(stream.frames).find((c) => c.callId === 'toolu_par_2')).to.include({ status: 'awaiting_approval' });
      } finally {
        stream.close();
        await approve(id, 'toolu_par_2', { outcome: 'cancel' });
        await waitForStatus(airlock, id, ['completed']);
      }
    });
  });
});

describe('Approval expiry (project approvalTimeoutMs)', function () {
  this.timeout(30_000);

  it('cancels a call nobody decided in time as expired; the task goes on and completes', async () => {
    const ran: Record<string, unknown>[] = [];
    const tools = new FakeToolRouter({ plain: { server: 'files', handler: (args) => (ran.push(args), text('ran')) } });
    const config = await writeConfig({ approvalTimeoutMs: 1000 });
    const airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: config.path }, overrides: { toolRouter: tools } });
    try {
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['plain', { i: 1 }]), autoExecute: false } });
      const id = res.body.data.id;
      const waiting = await waitForStatus(airlock, id, ['awaiting_approval']);
      expect(waiting.pendingApprovals).to.have.length(1);
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 10_000);
      expect(done.status).to.equal('completed');
      expect(ran).to.deep.equal([]);

      const { body } = await airlock.api(`/tasks/${id}/approvals`);
      const [entry] = body.data.approvals;
      expect(entry).to.include({ status: 'expired', outcome: 'cancel', reason: 'expired', decidedBy: 'system', argsEdited: false });
      expect(Date.parse(entry.expiresAt) - Date.parse(entry.requestedAt)).to.equal(1000);
      // Timers may fire a millisecond or two early against the wall clock.
      expect(Date.parse(entry.decidedAt)).to.be.at.least(Date.parse(entry.expiresAt) - 20);

      const frames = (await readSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` })).frames;
      const result = frames.find((f) => f.event === 'tool_result')!.data;
      expect(result).to.include({ status: 'cancelled', approvalId: entry.id });
      expect(result.output).to.match(/^Nobody approved/);
      expect(frames.filter((f) => f.event === 'status').map((f) => f.data.status)).to.deep.equal(['running', 'connecting', 'processing', 'awaiting_approval', 'running', 'processing', 'completed']);

      const late = await airlock.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      expect([late.status, late.body.error.code]).to.deep.equal([409, 'CONFLICT']);
      expect(ran).to.deep.equal([]);
    } finally {
      await airlock.stop();
      await rm(config.dir, { recursive: true, force: true });
    }
  });

  it('a call approved before its expiry runs, and does not expire afterwards', async () => {
    const ran: Record<string, unknown>[] = [];
    const tools = new FakeToolRouter({ plain: { server: 'files', handler: (args) => (ran.push(args), text('ran')) } });
    const config = await writeConfig({ approvalTimeoutMs: 1000 });
    const airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: config.path }, overrides: { toolRouter: tools } });
    try {
      // The second call waits too: the task is still live when the first call's timer would fire.
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['plain', { i: 1 }], ['plain', { i: 2 }]), autoExecute: false } });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['awaiting_approval']);
      expect((await airlock.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } })).status).to.equal(200);
      await waitForStatus(airlock, id, ['completed'], 10_000);
      const { body } = await airlock.api(`/tasks/${id}/approvals`);
      expect(body.data.approvals.map((a: any) => a.status)).to.deep.equal(['approved', 'expired']);
      expect(ran).to.deep.equal([{ i: 1 }]);
    } finally {
      await airlock.stop();
      await rm(config.dir, { recursive: true, force: true });
    }
  });
});

describe('Approval id in MCP _meta (real MCP server over HTTP)', function () {
  this.timeout(60_000);

  it('sends the approval id as _meta["io.airlock/approvalId"] with an approved call, and none with an unapproved one', async () => {
    expect(APPROVAL_META_KEY).to.equal('io.airlock/approvalId');
    // The echo fixture plus a tool that reports the request's _meta.
    const echo = await startSessionfulHttp({
      factory: () => {
        const server = createEchoServer();
        server.registerTool('meta', { description: 'Returns the request\'s _meta as JSON.' }, (ctx) => textResult(JSON.stringify(ctx.mcpReq._meta ?? null)));
        return server;
      },
    });
    const airlock = await startWithServers({ echo: { type: 'http', url: echo.url } }, { project: { builtinTools: false } });
    try {
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['echo__meta', {}]), autoExecute: false } });
      const id = res.body.data.id;
      const waiting = await waitForStatus(airlock, id, ['awaiting_approval'], 20_000);
      expect(waiting.pendingApprovals[0]).to.include({ callId: 'toolu_scripted_1', toolName: 'echo__meta', server: 'echo', tool: 'meta' });
      expect((await airlock.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } })).status).to.equal(200);
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.status, JSON.stringify(done.error)).to.equal('completed');
      const [entry] = (await airlock.api(`/tasks/${id}/approvals`)).body.data.approvals;
      const meta = JSON.parse(done.output.toolCalls[0].output);
      expect(meta[APPROVAL_META_KEY]).to.equal(entry.id);
      expect(entry.id).to.match(/^apr_/);

      const free = await airlock.api('/tasks', { method: 'POST', json: { message: script(['echo__meta', {}]), autoExecute: true } });
      const freeDone = await waitForStatus(airlock, free.body.data.id, ['completed', 'failed'], 20_000);
      const freeMeta = JSON.parse(freeDone.output.toolCalls[0].output);
      expect(freeMeta?.[APPROVAL_META_KEY]).to.equal(undefined);
    } finally {
      await airlock.stop();
      await echo.close();
    }
  });
});

describe('Approving built-in tool calls with edited arguments', function () {
  this.timeout(60_000);

  it('validates edited args against the built-in tool\'s 2020-12 input schema, then runs the edited call', async () => {
    const airlock = await startTestAirlock();
    try {
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['write_file', { path: 'a.txt', content: 'first' }]), autoExecute: false } });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['awaiting_approval'], 20_000);
      const bad = await airlock.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once', args: { path: 5, content: 'x' } } });
      expect(bad.status).to.equal(400);
      expect(bad.body.error.code).to.equal('VALIDATION_ERROR');
      expect(bad.body.error.details.map((d: { path: string }) => d.path)).to.include('/args/path');
      const good = await airlock.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once', args: { path: 'b.txt', content: 'edited' } } });
      expect(good.body.data).to.deep.equal({ approved: true });
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.output.toolCalls[0].output).to.include('b.txt');
      const [entry] = (await airlock.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(entry).to.include({ status: 'approved', argsEdited: true, policy: 'autoExecute is false' });
      expect(entry.editedArgs).to.deep.equal({ path: 'b.txt', content: 'edited' });
      expect(entry.args).to.deep.equal({ path: 'a.txt', content: 'first' });
    } finally {
      await airlock.stop();
    }
  });
});

describe('Approvals across a restart of the service', function () {
  this.timeout(60_000);

  /** One data dir and config, and an Airlock that can be stopped and started again on them. */
  async function restartable(config: Record<string, unknown>, tools?: FakeToolRouter) {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-approval-restart-'));
    await writeFile(join(dir, 'airlock.config.json'), JSON.stringify(config));
    const env = { AIRLOCK_CONFIG: join(dir, 'airlock.config.json') };
    const dataDir = join(dir, 'data');
    const started: TestAirlock[] = [];
    return {
      dataDir,
      start: async () => {
        const airlock = await startTestAirlock({ env, dataDir, ...(tools ? { overrides: { toolRouter: tools } } : {}) });
        started.push(airlock);
        return airlock;
      },
      cleanup: async () => {
        for (const airlock of started) await airlock.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  const ACT_SCHEMA = { type: 'object', properties: { path: { type: 'string' } }, required: ['path'], additionalProperties: false };

  it('a shutdown suspends the waiting task at once; after the restart it still waits, streams its pending call, and runs it once approved', async () => {
    const tools = new FakeToolRouter({ act: { inputSchema: ACT_SCHEMA, handler: (args) => text(`acted on ${String(args.path)}`) } });
    const service = await restartable({ server: { shutdownGraceMs: 20_000 } }, tools);
    try {
      const first = await service.start();
      const id = (await first.api('/tasks', { method: 'POST', json: { message: '/call act {"path":"a.txt"}\n/reply finished', autoExecute: false } })).body.data.id;
      await waitForStatus(first, id, ['awaiting_approval']);
      const before = Date.now();
      await first.close();
      expect(Date.now() - before, 'a waiting task does not hold the shutdown grace period').to.be.below(10_000);
      expect(tools.calls).to.deep.equal([]);

      const second = await service.start();
      const task = (await second.api(`/tasks/${id}`)).body.data;
      expect(task.status).to.equal('awaiting_approval');
      expect(task.pendingApprovals).to.have.length(1);
      expect(task.pendingApprovals[0]).to.include({ callId: 'toolu_scripted_1', toolName: 'act' });
      const [pending] = (await second.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(pending).to.include({ status: 'pending' });
      expect(pending).to.not.have.property('inputSchema');

      const stream = await openSse(`${second.url}/api/v1/tasks/${id}/stream`, { authorization: `Bearer ${second.key}` });
      try {
        const caught = await stream.waitFor((f) => f.event === 'tool_call');
        expect(caught.data).to.include({ callId: 'toolu_scripted_1', status: 'awaiting_approval', approvalId: pending.id });

        // Edited arguments are still checked against the tool's schema, kept with the approval.
        const bad = await second.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once', args: { path: 7 } } });
        expect(bad.status).to.equal(400);
        expect(bad.body.error.code).to.equal('VALIDATION_ERROR');
        const ok = await second.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once', args: { path: 'b.txt' } } });
        expect(ok.body.data).to.deep.equal({ approved: true });
        await stream.ended;
        const live = stream.frames.slice(stream.frames.indexOf(caught) + 1);
        expect(live.find((f) => f.event === 'tool_call')!.data).to.include({ status: 'executing', approvalId: pending.id });
        expect(live.at(-1)!.event).to.equal('done');
        expect(live.at(-1)!.data.finalResponse).to.equal('finished');
      } finally {
        stream.close();
      }
      expect(tools.calls.map((c) => c.args)).to.deep.equal([{ path: 'b.txt' }]);
      const done = (await second.api(`/tasks/${id}`)).body.data;
      expect(done.status).to.equal('completed');
      expect(done.output.toolCalls[0]).to.include({ status: 'success', approvalId: pending.id });
      expect(done.output.toolCalls[0].output).to.include('acted on b.txt');
      const [audit] = (await second.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(audit).to.include({ status: 'approved', argsEdited: true });
      const history = (await second.api(`/tasks/${id}/history`)).body.data.messages;
      // The run resumed by the second process is still one message: its tool call and its answer.
      expect(history.map((m: { role: string }) => m.role)).to.deep.equal(['user', 'assistant']);
      expect(history[1].toolCalls[0]).to.include({ callId: 'toolu_scripted_1', status: 'success' });
      expect(history[1].content).to.equal('finished');
    } finally {
      await service.cleanup();
    }
  });

  it('after a stop, a migration from schema 5 and a start, a waiting task runs its call once approved, and a finished task replays the same', async () => {
    const tools = new FakeToolRouter({ act: { handler: (args) => text(`acted on ${String(args.path)}`) } });
    const service = await restartable({}, tools);
    try {
      const first = await service.start();
      const finished = (await first.api('/tasks', { method: 'POST', json: { message: '/reply before the upgrade' } })).body.data.id;
      await waitForStatus(first, finished, ['completed']);
      const waiting = (await first.api('/tasks', { method: 'POST', json: { message: '/call act {"path":"a.txt"}\n/reply finished', autoExecute: false } })).body.data.id;
      await waitForStatus(first, waiting, ['awaiting_approval']);
      const replay = async (airlock: TestAirlock) => (await readSse(`${airlock.url}/api/v1/tasks/${finished}/stream?after=0`, { authorization: `Bearer ${airlock.key}` })).frames;
      const replayed = await replay(first);
      const history = (await first.api(`/tasks/${finished}/history`)).body.data;
      await first.close();
      downgradeToSchema5(join(service.dataDir, 'airlock.db'));

      const second = await service.start();
      expect(await replay(second)).to.deep.equal(replayed);
      expect((await second.api(`/tasks/${finished}/history`)).body.data).to.deep.equal(history);
      expect((await second.api(`/tasks/${waiting}`)).body.data.status).to.equal('awaiting_approval');
      const ok = await second.api(`/tasks/${waiting}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      expect(ok.body.data).to.deep.equal({ approved: true });
      const done = await waitForStatus(second, waiting, ['completed', 'failed']);
      expect(done.status, JSON.stringify(done.error)).to.equal('completed');
      expect(done.output.content).to.equal('finished');
      expect(tools.calls.map((c) => c.args)).to.deep.equal([{ path: 'a.txt' }]);
      const frames = (await readSse(`${second.url}/api/v1/tasks/${waiting}/stream?after=0`, { authorization: `Bearer ${second.key}` })).frames;
      const seqs = frames.filter((f) => f.event !== 'history_done').map((f) => f.id);
      expect(seqs, 'one numbering across the migration').to.deep.equal(seqs.map((_, i) => i + 1));
    } finally {
      await service.cleanup();
    }
  });

  it('a task whose secrets died with the old process fails clearly when approved, and a follow-up carrying them goes on', async () => {
    const tools = new FakeToolRouter({ act: { handler: (_args, context) => text(`token length ${context.variables.TOKEN?.length ?? 0}`) } });
    const service = await restartable({}, tools);
    const secret = `s3cr3t-${randomUUID()}`;
    try {
      const first = await service.start();
      const id = (await first.api('/tasks', { method: 'POST', json: { message: '/call act {}', autoExecute: false, secrets: { TOKEN: secret } } })).body.data.id;
      await waitForStatus(first, id, ['awaiting_approval']);
      await first.close();

      const second = await service.start();
      expect((await second.api(`/tasks/${id}`)).body.data.status).to.equal('awaiting_approval');
      await second.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      const failed = await waitForStatus(second, id, ['failed', 'completed']);
      expect(failed.status).to.equal('failed');
      expect(failed.error).to.match(/secrets \(TOKEN\).*follow-up/);
      expect(tools.calls, 'nothing runs without its secrets').to.deep.equal([]);
      expect(failed.output.toolCalls[0]).to.include({ callId: 'toolu_scripted_1', status: 'cancelled' });

      await second.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: '/call act {}', secrets: { TOKEN: secret } } });
      // The model's conversation kept the abandoned call, so the follow-up's call is its second.
      await pendingOn(second, id, 'toolu_scripted_2');
      await second.api(`/tasks/${id}/tools/toolu_scripted_2/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      const done = await waitForStatus(second, id, ['completed', 'failed']);
      expect(done.status).to.equal('completed');
      expect(done.output.toolCalls[0].output).to.equal(`token length ${secret.length}`);
      const stored = JSON.stringify((await second.api(`/tasks/${id}/history`)).body) + JSON.stringify(failed);
      expect(stored).to.not.include(secret);
    } finally {
      await service.cleanup();
    }
  });

  it('an approval that expires while no process runs is closed as expired at the next start, and the model is told', async () => {
    const tools = new FakeToolRouter({ act: { handler: () => text('acted') } });
    const service = await restartable({ projects: { default: { approvalTimeoutMs: 1_500 } } }, tools);
    try {
      const first = await service.start();
      const id = (await first.api('/tasks', { method: 'POST', json: { message: '/call act {}', autoExecute: false } })).body.data.id;
      await waitForStatus(first, id, ['awaiting_approval']);
      await first.close();
      await new Promise((resolve) => setTimeout(resolve, 1_600));

      const second = await service.start();
      const done = await waitForStatus(second, id, ['completed', 'failed'], 15_000);
      expect(done.status).to.equal('completed');
      expect(done.output.toolCalls[0]).to.include({ status: 'cancelled' });
      expect(done.output.toolCalls[0].output).to.match(/Nobody approved this tool call in time/);
      const [audit] = (await second.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(audit).to.include({ status: 'expired', reason: 'expired', decidedBy: 'system' });
      expect(tools.calls).to.deep.equal([]);
    } finally {
      await service.cleanup();
    }
  });

  it('a suspended task can be cancelled after the restart: its call shows as not run and its approval is closed', async () => {
    const tools = new FakeToolRouter({ act: { handler: () => text('acted') } });
    const service = await restartable({}, tools);
    try {
      const first = await service.start();
      const id = (await first.api('/tasks', { method: 'POST', json: { message: '/call act {}', autoExecute: false } })).body.data.id;
      await waitForStatus(first, id, ['awaiting_approval']);
      await first.close();

      const second = await service.start();
      expect((await second.api(`/tasks/${id}`, { method: 'DELETE' })).status).to.equal(200);
      const task = (await second.api(`/tasks/${id}`)).body.data;
      expect(task.status).to.equal('cancelled');
      expect(task.output.toolCalls[0]).to.include({ status: 'cancelled' });
      const [audit] = (await second.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(audit).to.include({ status: 'cancelled', decidedBy: 'system' });
      const late = await second.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      expect(late.status).to.equal(409);
      expect(tools.calls).to.deep.equal([]);
    } finally {
      await service.cleanup();
    }
  });

  it('of two parallel calls, one decided before the shutdown and one after, each runs exactly once', async () => {
    const tools = new FakeToolRouter({ one: { handler: () => text('one done') }, two: { handler: () => text('two done') } });
    const service = await restartable({}, tools);
    try {
      const first = await service.start();
      // The scripted model makes one call per turn; both calls wait in turn one and two here.
      const id = (await first.api('/tasks', { method: 'POST', json: { message: '/call one {}\n/call two {}\n/reply both', autoExecute: false } })).body.data.id;
      await pendingOn(first, id, 'toolu_scripted_1');
      await first.api(`/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      await pendingOn(first, id, 'toolu_scripted_2');
      await first.close();

      const second = await service.start();
      const [a, b] = await Promise.all([1, 2].map(() => second.api(`/tasks/${id}/tools/toolu_scripted_2/approve`, { method: 'POST', json: { outcome: 'proceed_once' } })));
      expect([a!.status, b!.status].sort()).to.deep.equal([200, 409]);
      const done = await waitForStatus(second, id, ['completed', 'failed']);
      expect(done.status).to.equal('completed');
      expect(tools.calls.map((c) => c.name)).to.deep.equal(['one', 'two']);
    } finally {
      await service.cleanup();
    }
  });

  it('an MCP input request pending at the shutdown is closed (its connection is gone); the task resumes and finishes', async () => {
    const ask = await startAskHttpServer();
    const service = await restartable({ projects: { default: { builtinTools: false, mcpServers: { ask: { type: 'http', url: ask.url } } } } });
    try {
      const first = await service.start();
      const id = (await first.api('/tasks', { method: 'POST', json: { message: '/call ask__ask {"label":"name"}\n/reply asked' } })).body.data.id;
      const requestId = await waitFor(async () => (await first.api(`/tasks/${id}`)).body.data.pendingInputs?.[0]?.requestId as string | undefined, 'the input request', 15_000);
      await first.close();

      const second = await service.start();
      const done = await waitForStatus(second, id, ['completed', 'failed'], 15_000);
      expect(done.status, JSON.stringify(done.error)).to.equal('completed');
      expect(done).to.not.have.property('pendingInputs');
      const late = await second.api(`/tasks/${id}/inputs/${requestId}`, { method: 'POST', json: { action: 'accept', content: { answer: 'x' } } });
      expect(late.status).to.equal(409);
      const frames = await readAll(second, id);
      const resolved = frames.filter((f) => f.event === 'input_resolved' && f.data.requestId === requestId);
      expect(resolved, 'closed once').to.have.length(1);
      expect(resolved[0]!.data).to.include({ action: 'cancel', answeredBy: 'system' });
    } finally {
      await service.cleanup();
      await ask.close();
    }
  });

  async function readAll(airlock: TestAirlock, id: string): Promise<SseFrame[]> {
    const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
    await stream.ended;
    return stream.frames;
  }

  /** Waits until the call is pending approval on the task. */
  async function pendingOn(airlock: TestAirlock, id: string, callId: string): Promise<void> {
    await waitFor(async () => {
      const { body } = await airlock.api(`/tasks/${id}`);
      return body.data.pendingApprovals?.some((p: { callId: string }) => p.callId === callId);
    }, `${callId} to wait for approval`);
  }
});

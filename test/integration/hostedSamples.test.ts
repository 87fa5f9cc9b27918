import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { EVENT_TYPES, REPLAY_EVENT_TYPES } from '../../src/runtime/events/events.js';
import { startTestAirlock, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { processSSEStream } from '../support/hostedNodeSample.js';
import { startRecordingProxy } from '../support/recordingProxy.js';
import { parseSseBody } from '../support/sse.js';

const PYTHON_SAMPLE = fileURLToPath(new URL('../support/hosted_python_sample.py', import.meta.url));
const SAMPLE_TIMEOUT_MS = 20_000;

/** One event as a parser handed it to its caller. */
type Parsed = { event: string; data: any };

/**
 * Runs the Python sample on a task's stream; `onEvent` sees each event as the script prints it,
 * so a test can act on a live stream. Resolves with every event and the final response.
 */
function runPythonSample(airlock: { url: string; key: string }, taskId: string, onEvent: (parsed: Parsed) => void = () => {}): Promise<{ events: Parsed[]; finalResponse: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [PYTHON_SAMPLE, taskId], { env: { ...process.env, BASE_URL: airlock.url, API_KEY: airlock.key }, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the Python sample did not finish within ${SAMPLE_TIMEOUT_MS} ms`));
    }, SAMPLE_TIMEOUT_MS);
    const events: Parsed[] = [];
    let finalResponse: string | undefined;
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const parsed = JSON.parse(line);
      if ('final_response' in parsed) finalResponse = parsed.final_response;
      else {
        events.push(parsed);
        onEvent(parsed);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 || finalResponse === undefined) reject(new Error(`the Python sample exited ${code}: ${stderr}`));
      else resolve({ events, finalResponse });
    });
  });
}

/** Runs the Node sample with a handler for every event type Airlock documents, recording each. */
async function runNodeSample(airlock: { url: string; key: string }, taskId: string, onEvent: (parsed: Parsed) => void = () => {}): Promise<{ events: Parsed[]; finalResponse: string }> {
  const events: Parsed[] = [];
  const handlers = Object.fromEntries([...EVENT_TYPES, ...REPLAY_EVENT_TYPES].map((event) => [event, (data: any) => {
    events.push({ event, data });
    onEvent({ event, data });
  }]));
  const { finalResponse } = await processSSEStream(airlock.url, airlock.key, taskId, handlers);
  return { events, finalResponse };
}

// A client written from the hosted API's docs must work against Airlock by changing the base URL
// and the key: the samples' SSE parsers (line 0 is `event:`, line 1 is `data:`; Airlock's `id:`
// line comes third) must read every frame Airlock sends, live and replayed. Each sample talks to
// Airlock through a proxy that records the bytes it got, and what the sample made of them must be
// exactly what a strict parser reads from the same bytes.
describe('The hosted API\'s sample SSE parsers (Node.js and Python) on a real Airlock stream', () => {
  let airlock: TestAirlock;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let taskId: string;
  /** Each stream a sample read: what it yielded, and the bytes it was given. */
  const streams: { name: string; events: Parsed[]; finalResponse: string; body: string }[] = [];

  async function viaProxy(name: string, run: typeof runNodeSample, onEvent?: (parsed: Parsed) => void): Promise<void> {
    const before = proxy.responses.length;
    // A sample that misses the tool_call it must approve would wait forever: fail saying so.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${name}: the sample did not reach the end of the stream within ${SAMPLE_TIMEOUT_MS} ms (did it miss a frame it must act on?)`)), SAMPLE_TIMEOUT_MS)));
    const result = await Promise.race([run({ url: proxy.url, key: airlock.key }, taskId, onEvent), timeout]).finally(() => clearTimeout(timer));
    const recorded = proxy.responses.slice(before).filter((r) => r.path.endsWith('/stream'));
    expect(recorded, name).to.have.length(1);
    expect(recorded[0]!.status, name).to.equal(200);
    streams.push({ name, ...result, body: recorded[0]!.body });
  }

  before(async function () {
    this.timeout(120_000);
    airlock = await startTestAirlock({ env: { AIRLOCK_HEARTBEAT_MS: '100' } });
    proxy = await startRecordingProxy(airlock.url);
    const approveWaiting = (parsed: Parsed) => {
      if (parsed.event === 'tool_call' && parsed.data.status === 'awaiting_approval') {
        void airlock.api(`/tasks/${taskId}/tools/${parsed.data.callId}/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
      }
    };
    // The first run, with tool calls that wait for approval, streamed live by the Node sample,
    // which approves each call as its tool_call arrives.
    const created = await airlock.api('/tasks', { method: 'POST', json: {
      autoExecute: false,
      message: '/think Planning the notes\n/call write_file {"path":"notes.txt","content":"Remember the milk.\\nÜnïcödé ✓\\n"}\n/call read_file {"path":"notes.txt"}\n/reply Wrote notes.txt and read it back.',
    } });
    taskId = created.body.data.id;
    await viaProxy('Node, live run', runNodeSample, approveWaiting);
    await waitForStatus(airlock, taskId, ['completed']);
    // A follow-up with another approval (and turns slow enough for heartbeats), streamed live by the
    // Python sample, approving from its output.
    await airlock.api(`/tasks/${taskId}/messages`, { method: 'POST', json: { message: '/delay 300\n/call run_shell_command {"command":"cat notes.txt"}\n/reply Shown: "quotes", a back\\slash, a tab\there and the data: 42.' } });
    await viaProxy('Python, live follow-up', runPythonSample, approveWaiting);
    await waitForStatus(airlock, taskId, ['completed']);
    // Both again on the finished task: the replay of its history.
    await viaProxy('Node, replay', runNodeSample);
    await viaProxy('Python, replay', runPythonSample);
  });
  after(async () => {
    await proxy?.close();
    await airlock?.stop();
  });

  it('follow each live run to its end: each approval asked for and given, the calls run, the final answer', () => {
    const [node, python] = streams;
    for (const run of [node!, python!]) {
      expect(run.events.filter((e) => e.event === 'tool_call' && e.data.status === 'awaiting_approval').length, run.name).to.be.at.least(1);
      expect(run.events.some((e) => e.event === 'tool_result' && e.data.status === 'success'), run.name).to.equal(true);
      expect(run.events.at(-1), run.name).to.deep.include({ event: 'done' });
    }
    expect(node!.finalResponse).to.equal('Wrote notes.txt and read it back.');
    expect(python!.finalResponse).to.equal('Shown: "quotes", a back\\slash, a tab\there and the data: 42.');
  });

  it('were given every kind of frame: approvals, executions, results, deltas, statuses, history, heartbeats', () => {
    const parsed = streams.map((s) => parseSseBody(s.body));
    const kinds = new Set(parsed.flatMap((p) => p.frames).map((f) => `${f.event}:${f.data.status ?? f.data.isPartial ?? ''}`));
    for (const kind of ['history_message:', 'history_done:', 'status:processing', 'status:awaiting_approval', 'status:running', 'tool_call:awaiting_approval', 'tool_call:executing', 'tool_result:success', 'content:true', 'content:false', 'status:completed', 'done:']) {
      expect([...kinds], kind).to.include(kind);
    }
    expect(parsed.flatMap((p) => p.comments)).to.include(':heartbeat');
    // The replays: the history, one assistant message per run, then history_done.
    for (const replay of parsed.slice(2)) expect(replay.frames.map((f) => f.event)).to.deep.equal(['history_message', 'history_message', 'history_message', 'history_message', 'history_done']);
  });

  it('read every frame of every stream, exactly as a strict parser reads the same bytes', () => {
    for (const stream of streams) {
      const strict = parseSseBody(stream.body).frames.map((f) => ({ event: f.event, data: f.data }));
      expect(strict.length, stream.name).to.be.above(1);
      expect(stream.events, stream.name).to.deep.equal(strict);
    }
  });
});

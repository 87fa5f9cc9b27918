import { expect } from 'chai';
import { ProgressCoalescer } from '../../src/runtime/tools/progressCoalescer.js';
import type { ToolProgress } from '../../src/runtime/tools/toolRouter.js';

describe('ProgressCoalescer', () => {
  const collect = (intervalMs: number, now: () => number) => {
    const sent: number[] = [];
    const coalescer = new ProgressCoalescer((p: ToolProgress) => sent.push(p.progress), intervalMs, now);
    return { sent, coalescer };
  };

  it('sends the first at once, keeps only the latest within the interval, and sends it on finish', () => {
    const { sent, coalescer } = collect(250, () => 0);
    for (let i = 1; i <= 10_000; i++) coalescer.offer({ progress: i });
    expect(sent).to.deep.equal([1]);
    coalescer.finish();
    expect(sent).to.deep.equal([1, 10_000]);
    coalescer.offer({ progress: 10_001 });
    coalescer.finish();
    expect(sent, 'nothing after the result').to.deep.equal([1, 10_000]);
  });

  it('sends at once again once the interval has passed', () => {
    let clock = 0;
    const { sent, coalescer } = collect(250, () => clock);
    coalescer.offer({ progress: 1 });
    clock = 300;
    coalescer.offer({ progress: 2 });
    expect(sent).to.deep.equal([1, 2]);
  });

  it('sends the waiting progress when its interval ends, without a finish', async () => {
    const { sent, coalescer } = collect(10, () => performance.now());
    coalescer.offer({ progress: 1 });
    coalescer.offer({ progress: 2 });
    coalescer.offer({ progress: 3 });
    expect(sent).to.deep.equal([1]);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(sent).to.deep.equal([1, 3]);
    coalescer.finish();
    expect(sent).to.deep.equal([1, 3]);
  });
});

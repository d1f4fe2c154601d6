import { describe, expect, it } from 'vitest';
import { VerifyGate } from '../../src/push/verify-gate.js';

/** A task that resolves when its `finish` is called, recording that it started. */
function held(started: string[], name: string) {
  let finish: () => void = () => undefined;
  const done = new Promise<string>((resolve) => (finish = () => resolve(name)));
  return {
    task: () => {
      started.push(name);
      return done;
    },
    finish: () => finish(),
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('VerifyGate', () => {
  it('runs at most inFlight tasks at once, the others in arrival order as slots free', async () => {
    const gate = new VerifyGate(2, 10);
    const started: string[] = [];
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => held(started, n)) as ReturnType<
      typeof held
    >[];
    const runs = [a, b, c, d].map((t) => gate.run(t!.task, () => true));
    await tick();
    expect(started).toEqual(['a', 'b']);
    expect(gate.load).toEqual({ active: 2, waiting: 2 });
    b!.finish();
    await tick();
    expect(started).toEqual(['a', 'b', 'c']);
    a!.finish();
    c!.finish();
    d!.finish();
    expect(await Promise.all(runs)).toEqual(
      ['a', 'b', 'c', 'd'].map((value) => ({ ran: true, value })),
    );
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
  });

  it('refuses at once (busy) when maxWaiting tasks already wait', async () => {
    const gate = new VerifyGate(1, 1);
    const started: string[] = [];
    const a = held(started, 'a');
    const b = held(started, 'b');
    const first = gate.run(a.task, () => true);
    const second = gate.run(b.task, () => true);
    expect(await gate.run(held(started, 'c').task, () => true)).toEqual({
      ran: false,
      why: 'busy',
    });
    a.finish();
    await first;
    await tick();
    expect(started).toEqual(['a', 'b']);
    b.finish();
    expect(await second).toEqual({ ran: true, value: 'b' });
  });

  it('drops a task whose caller no longer wants it when its turn comes, and frees the slot', async () => {
    const gate = new VerifyGate(1, 10);
    const started: string[] = [];
    const a = held(started, 'a');
    let wanted = true;
    const first = gate.run(a.task, () => true);
    const dropped = gate.run(held(started, 'b').task, () => wanted);
    wanted = false;
    a.finish();
    await first;
    expect(await dropped).toEqual({ ran: false, why: 'unwanted' });
    expect(started).toEqual(['a']);
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
  });

  it('frees the slot when a task throws', async () => {
    const gate = new VerifyGate(1, 10);
    await expect(
      gate.run(
        () => Promise.reject(new Error('boom')),
        () => true,
      ),
    ).rejects.toThrow('boom');
    expect(gate.load).toEqual({ active: 0, waiting: 0 });
    expect(
      await gate.run(
        async () => 1,
        () => true,
      ),
    ).toEqual({ ran: true, value: 1 });
  });
});

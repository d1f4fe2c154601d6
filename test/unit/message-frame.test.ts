import { describe, expect, it } from 'vitest';
import { messageFrameText } from '../../src/protocol/frames.js';

const payloads: unknown[] = [
  null,
  0,
  'a "quoted" \\ string\n with 🚀 and \u2028',
  { text: 'héllo', nested: { list: [1, 2.5, true, null, { deep: ['x'] }] }, empty: {} },
  [],
];

describe('messageFrameText', () => {
  it('puts the frame together around the payload JSON exactly as serializing it would', () => {
    const id = '01ARZ3NDEKTSV4RRFFQ69G5FAV';
    const createdAt = '2026-11-21T18:00:00.000Z';
    for (const payload of payloads) {
      const serialized = messageFrameText({ id, payload, createdAt });
      const assembled = messageFrameText({
        id,
        payload,
        payloadJson: JSON.stringify(payload),
        createdAt,
      });
      expect(assembled).toBe(serialized);
      expect(JSON.parse(assembled)).toEqual({ type: 'message', id, payload, createdAt });
    }
  });
});

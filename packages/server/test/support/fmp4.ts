/** Reading CMAF fragments back in tests (ISO/IEC 14496-12 moof/traf boxes). */

/** Each track's [first decode time, end] in a CMAF fragment sequence (moof/traf/tfhd+tfdt+trun), track timescale ticks. */
export function trackSpans(bytes: Buffer): Map<number, [number, number]> {
  const spans = new Map<number, [number, number]>();
  const boxes = (buf: Buffer, from: number, to: number, visit: (type: string, start: number, end: number) => void): void => {
    for (let at = from; at + 8 <= to; ) {
      const size = buf.readUInt32BE(at);
      visit(buf.toString('latin1', at + 4, at + 8), at + 8, at + size);
      at += size;
    }
  };
  boxes(bytes, 0, bytes.length, (type, start, end) => {
    if (type !== 'moof') return;
    boxes(bytes, start, end, (t, s, e) => {
      if (t !== 'traf') return;
      let track = 0;
      let base = 0;
      let duration = 0;
      boxes(bytes, s, e, (tt, ss) => {
        if (tt === 'tfhd') track = bytes.readUInt32BE(ss + 4);
        if (tt === 'tfdt') base = bytes[ss] === 1 ? Number(bytes.readBigUInt64BE(ss + 4)) : bytes.readUInt32BE(ss + 4);
        if (tt === 'trun') {
          const flags = bytes.readUIntBE(ss + 1, 3);
          const count = bytes.readUInt32BE(ss + 4);
          let at = ss + 8 + (flags & 1 ? 4 : 0) + (flags & 4 ? 4 : 0);
          const per = [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length * 4;
          for (let i = 0; i < count; i++, at += per) duration += flags & 0x100 ? bytes.readUInt32BE(at) : 0;
        }
      });
      const prior = spans.get(track);
      spans.set(track, [prior?.[0] ?? base, base + duration]);
    });
  });
  return spans;
}


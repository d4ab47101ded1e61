/**
 * MSB-first bit reader over a byte buffer, with Exp-Golomb helpers (ITU-T H.264 §9.1).
 * Reading past the end throws a RangeError; callers catch it at the parser boundary.
 */
export class BitReader {
  private bytePos = 0;
  private bitPos = 0;

  constructor(private readonly data: Uint8Array) {}

  /** Bits still unread. */
  get bitsLeft(): number {
    return (this.data.length - this.bytePos) * 8 - this.bitPos;
  }

  /** Reads one bit (0 or 1). Throws RangeError past the end. */
  readBit(): number {
    if (this.bytePos >= this.data.length) throw new RangeError('BitReader: read past end');
    const bit = (this.data[this.bytePos]! >> (7 - this.bitPos)) & 1;
    this.bitPos++;
    if (this.bitPos === 8) {
      this.bitPos = 0;
      this.bytePos++;
    }
    return bit;
  }

  /** Reads `n` bits (n ≤ 32) as an unsigned integer. */
  readBits(n: number): number {
    let value = 0;
    for (let i = 0; i < n; i++) value = value * 2 + this.readBit();
    return value;
  }

  /** Skips `n` bits. */
  skipBits(n: number): void {
    if (n > this.bitsLeft) throw new RangeError('BitReader: skip past end');
    const total = this.bitPos + n;
    this.bytePos += total >> 3;
    this.bitPos = total & 7;
  }

  /** Unsigned Exp-Golomb ue(v), ITU-T H.264 §9.1. Throws RangeError on over-long codes. */
  readUe(): number {
    let zeros = 0;
    while (this.readBit() === 0) {
      zeros++;
      if (zeros > 31) throw new RangeError('BitReader: Exp-Golomb code too long');
    }
    return 2 ** zeros - 1 + this.readBits(zeros);
  }

  /** Signed Exp-Golomb se(v), ITU-T H.264 §9.1.1. */
  readSe(): number {
    const k = this.readUe();
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
  }
}

/**
 * Removes emulation-prevention bytes (00 00 03 → 00 00) from a NAL unit payload (ITU-T H.264 §7.4.1,
 * H.265 §7.4.2), giving the RBSP.
 */
export function nalToRbsp(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(nal.length);
  let n = 0;
  let zeros = 0;
  for (const b of nal) {
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    out[n++] = b;
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return out.subarray(0, n);
}

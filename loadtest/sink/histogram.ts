/**
 * A log-linear histogram in the style of HdrHistogram, kept small and allocation-free so it can sit
 * on a 30k req/s hot path.
 *
 * Values are non-negative integers (callers pick the unit: the sink records microseconds). Values
 * below 2·SUB (= 256) get one bucket each; above that every power of two is split into SUB (= 128)
 * equal buckets, so any recorded value is reported within 1/128 (< 0.8 %) of its true value. That
 * is two significant digits, which is what a percentile in a benchmark report can honestly claim.
 * The top bucket covers 2^MAX_EXP (about 19 hours in microseconds); larger values are clamped, and
 * the exact maximum is kept separately.
 */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // buckets per power of two above the linear range
const LINEAR = SUB * 2; // values 0..LINEAR-1 are exact
const MAX_EXP = 36;
const BUCKETS = LINEAR + (MAX_EXP - SUB_BITS) * SUB;
const MAX_TRACKABLE = 2 ** MAX_EXP - 1;

function bucketOf(value: number): number {
  if (value < LINEAR) return value;
  // floor(log2) without Math.log2 for the common 32-bit range; clz32 is a single instruction.
  const exp = value < 2 ** 31 ? 31 - Math.clz32(value) : Math.floor(Math.log2(value));
  const shift = exp - SUB_BITS; // value >> shift lies in [SUB, 2·SUB)
  const mantissa = Math.floor(value / 2 ** shift) - SUB;
  return LINEAR + (shift - 1) * SUB + mantissa;
}

/** The largest value that lands in bucket `index`; percentiles report this upper edge. */
function upperEdgeOf(index: number): number {
  if (index < LINEAR) return index;
  const shift = Math.floor((index - LINEAR) / SUB) + 1;
  const mantissa = (index - LINEAR) % SUB;
  return (SUB + mantissa + 1) * 2 ** shift - 1;
}

export interface HistogramSummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

export class LogHistogram {
  private counts = new Float64Array(BUCKETS);
  private total = 0;
  private sum = 0;
  private minValue = Number.POSITIVE_INFINITY;
  private maxValue = 0;

  record(value: number): void {
    const v = value <= 0 ? 0 : value >= MAX_TRACKABLE ? MAX_TRACKABLE : Math.round(value);
    this.counts[bucketOf(v)]! += 1;
    this.total++;
    this.sum += v;
    if (v < this.minValue) this.minValue = v;
    if (v > this.maxValue) this.maxValue = v;
  }

  get count(): number {
    return this.total;
  }

  get max(): number {
    return this.total === 0 ? 0 : this.maxValue;
  }

  get min(): number {
    return this.total === 0 ? 0 : this.minValue;
  }

  get mean(): number {
    return this.total === 0 ? 0 : this.sum / this.total;
  }

  /**
   * The value at percentile `p` (0–100): the upper edge of the bucket holding the ⌈p·n/100⌉-th
   * smallest value, capped by the exact max so p100 never exceeds what was seen.
   */
  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(upperEdgeOf(i), this.maxValue);
    }
    return this.maxValue;
  }

  /** Adds another histogram's counts, e.g. to combine per-worker generators into one report. */
  merge(other: LogHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.sum += other.sum;
    if (other.total > 0) {
      this.minValue = Math.min(this.minValue, other.minValue);
      this.maxValue = Math.max(this.maxValue, other.maxValue);
    }
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
    this.sum = 0;
    this.minValue = Number.POSITIVE_INFINITY;
    this.maxValue = 0;
  }

  /** All the usual statistics, each divided by `scale` (e.g. 1000 to turn µs into ms). */
  summary(scale = 1): HistogramSummary {
    const s = (v: number) => Math.round((v / scale) * 1000) / 1000;
    return {
      count: this.total,
      min: s(this.min),
      mean: s(this.mean),
      p50: s(this.percentile(50)),
      p90: s(this.percentile(90)),
      p95: s(this.percentile(95)),
      p99: s(this.percentile(99)),
      p999: s(this.percentile(99.9)),
      max: s(this.max),
    };
  }
}

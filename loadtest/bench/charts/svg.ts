/**
 * A small SVG line-chart renderer for the benchmark's charts: one or two panels side by side, each
 * with its own y axis, sharing the x quantity; axes with ticks and units, grid lines, a legend per
 * panel, markers on every measured point. Hand-written SVG, no dependency, no script: the files open
 * in a browser and render on GitHub as they are.
 */

export interface Point {
  x: number;
  y: number;
  /** Drawn as an open marker: a point that missed something (a ramp step that did not keep up). */
  open?: boolean;
}

export interface Series {
  name: string;
  points: Point[];
  /** The line that sums the others (stack total): drawn thicker and in black. */
  total?: boolean;
  /** A reference line (a target): drawn dashed and grey. */
  reference?: boolean;
  /** Series with the same key have the same colour in every panel (a transport, a process). Default: the name. */
  key?: string;
}

export interface Panel {
  title: string;
  /** Axis label, with its unit: "core·ms per delivery". */
  yLabel: string;
  yLog?: boolean;
  series: Series[];
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  xLog?: boolean;
  /** Ticks at these x values with these labels (the measured points, say "1 KB"); default: round numbers. */
  xTicks?: Array<{ x: number; label: string }>;
  panels: Panel[];
}

export const CHART_WIDTH = 800;
export const CHART_HEIGHT = 400;
const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const PAD = 16;
const GAP = 28;
const Y_AXIS = 58;
const LEGEND_ROW = 18;
// Okabe–Ito without its yellow (too faint on white), then indigo: tells series apart for colour-blind readers too.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#332288", "#999999"];

/** About how wide a label is at `size` px in a sans-serif font: for layout, never exact. */
export function textWidth(text: string, size: number): number {
  return text.length * size * 0.56;
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const fixed = (v: number) => (Math.round(v * 10) / 10).toString();

/** 1,234 → "1.2k", 0.05 → "0.05", 2,000,000 → "2M": tick labels that stay short. */
export function formatNumber(v: number): string {
  const a = Math.abs(v);
  const trim = (s: string) => s.replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1");
  if (a >= 1e6) return trim((v / 1e6).toFixed(a >= 1e7 ? 0 : 1)) + "M";
  if (a >= 1e4) return trim((v / 1e3).toFixed(0)) + "k";
  if (a >= 1e3) return trim((v / 1e3).toFixed(1)) + "k";
  if (a >= 10 || v === 0) return trim(v.toFixed(0));
  if (a >= 1) return trim(v.toPrecision(3));
  return trim(v.toPrecision(2));
}

interface Scale {
  min: number;
  max: number;
  log: boolean;
  ticks: number[];
}

/** Round-number ticks (1, 2 or 5 × 10^k apart) covering [0 or lo, hi]. */
function linearScale(lo: number, hi: number, fromZero: boolean): Scale {
  let min = fromZero ? Math.min(0, lo) : lo;
  let max = hi;
  if (!(max > min)) [min, max] = max === 0 ? [0, 1] : [min - Math.abs(min) * 0.5, max + Math.abs(max) * 0.5];
  const rough = (max - min) / 5;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rough)!;
  const first = Math.floor(min / step + 1e-9) * step;
  const last = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = first; v <= last + step / 2; v += step) ticks.push(Math.round(v / step) * step);
  return { min: first, max: last, log: false, ticks };
}

/** Decades, with 2 and 5 between them when the range spans fewer than three. */
function logScale(lo: number, hi: number): Scale {
  if (!(hi > lo)) [lo, hi] = [lo / 3, hi * 3];
  const d0 = Math.floor(Math.log10(lo) + 1e-9);
  const d1 = Math.ceil(Math.log10(hi) - 1e-9);
  const steps = d1 - d0 <= 2 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let d = d0; d <= d1; d++) for (const m of steps) if (m * 10 ** d <= 10 ** d1 * 1.0001) ticks.push(m * 10 ** d);
  return { min: 10 ** d0, max: 10 ** d1, log: true, ticks };
}

const at = (s: Scale, v: number) => (s.log ? (Math.log10(v) - Math.log10(s.min)) / (Math.log10(s.max) - Math.log10(s.min)) : (v - s.min) / (s.max - s.min));

/** Finite points only, and on a log axis positive ones: what can be drawn. */
function drawable(points: Point[], xLog: boolean, yLog: boolean): Point[] {
  return points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!xLog || p.x > 0) && (!yLog || p.y > 0));
}

/** One colour per series key across the chart's panels, in order of first appearance. */
function colours(panels: Panel[]): (s: Series) => string {
  const keys: string[] = [];
  for (const p of panels) for (const s of p.series) if (!s.total && !s.reference && !keys.includes(s.key ?? s.name)) keys.push(s.key ?? s.name);
  return (s) => (s.total ? "#000000" : s.reference ? "#777777" : PALETTE[keys.indexOf(s.key ?? s.name) % PALETTE.length]!);
}

/** Legend entries laid out in rows that fit `width`. */
function legendRows(names: string[], width: number): string[][] {
  const rows: string[][] = [[]];
  let used = 0;
  for (const name of names) {
    const w = 26 + textWidth(name, 11) + 14;
    if (used + w > width && rows.at(-1)!.length > 0) {
      rows.push([]);
      used = 0;
    }
    rows.at(-1)!.push(name);
    used += w;
  }
  return rows;
}

/** Tick labels left to right, dropping any that would touch the one kept before it. */
function spacedLabels(items: Array<{ pos: number; label: string }>, size: number): Array<{ pos: number; label: string }> {
  const kept: Array<{ pos: number; label: string }> = [];
  for (const it of [...items].sort((a, b) => a.pos - b.pos)) {
    const prev = kept.at(-1);
    if (prev && it.pos - textWidth(it.label, size) / 2 < prev.pos + textWidth(prev.label, size) / 2 + 6) continue;
    kept.push(it);
  }
  return kept;
}

function renderPanel(spec: ChartSpec, panel: Panel, box: { x: number; y: number; w: number; h: number }, xScale: Scale, colourOf: (s: Series) => string): string[] {
  const out: string[] = [];
  const series = panel.series
    .map((s) => ({ s, colour: colourOf(s), points: drawable(s.points, !!spec.xLog, !!panel.yLog) }))
    .filter((e) => e.points.length > 0);
  const rows = legendRows(
    series.map((e) => e.s.name),
    box.w - Y_AXIS,
  );
  const legendH = rows.length * LEGEND_ROW;
  const plot = { left: box.x + Y_AXIS, right: box.x + box.w - 10, top: box.y + 26, bottom: box.y + box.h - legendH - 44 };
  const ys = series.flatMap((e) => e.points.map((p) => p.y));
  const yScale = panel.yLog
    ? logScale(Math.min(...ys, Infinity) || 1, Math.max(...ys, -Infinity) || 10)
    : linearScale(0, ys.length ? Math.max(...ys) : 1, true);
  const px = (v: number) => plot.left + at(xScale, v) * (plot.right - plot.left);
  const py = (v: number) => plot.bottom - at(yScale, v) * (plot.bottom - plot.top);

  out.push(`<text x="${box.x}" y="${box.y + 12}" font-size="13" font-weight="600" fill="#222">${escape(panel.title)}</text>`);
  // Grid and y ticks.
  for (const t of yScale.ticks) {
    const y = fixed(py(t));
    out.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${y}" y2="${y}" stroke="#e6e6e6" stroke-width="1"/>`);
    out.push(`<text x="${plot.left - 6}" y="${y}" font-size="11" fill="#444" text-anchor="end" dominant-baseline="middle">${escape(formatNumber(t))}</text>`);
  }
  // x ticks: the given ones (measured points) or round numbers.
  const xTicks = spec.xTicks?.filter((t) => !spec.xLog || t.x > 0) ?? xScale.ticks.map((x) => ({ x, label: formatNumber(x) }));
  for (const t of spacedLabels(
    xTicks.map((t) => ({ pos: px(t.x), label: t.label })),
    11,
  )) {
    const x = fixed(t.pos);
    out.push(`<line x1="${x}" x2="${x}" y1="${plot.bottom}" y2="${plot.bottom + 4}" stroke="#888"/>`);
    // A long label at either end of the axis is aligned to its tick's side, so it stays in its panel.
    const half = textWidth(t.label, 11) / 2;
    const anchor = t.pos + half > box.x + box.w ? "end" : t.pos - half < box.x ? "start" : "middle";
    out.push(`<text x="${x}" y="${plot.bottom + 16}" font-size="11" fill="#444" text-anchor="${anchor}">${escape(t.label)}</text>`);
  }
  // Axes.
  out.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#888"/>`);
  out.push(`<line x1="${plot.left}" x2="${plot.left}" y1="${plot.top}" y2="${plot.bottom}" stroke="#888"/>`);
  out.push(`<text x="${fixed((plot.left + plot.right) / 2)}" y="${plot.bottom + 33}" font-size="11.5" fill="#333" text-anchor="middle">${escape(spec.xLabel)}</text>`);
  const yMid = fixed((plot.top + plot.bottom) / 2);
  out.push(`<text x="${box.x + 12}" y="${yMid}" font-size="11.5" fill="#333" text-anchor="middle" transform="rotate(-90 ${box.x + 12} ${yMid})">${escape(panel.yLabel)}</text>`);
  // Series: the total last, so it is drawn on top.
  const ordered = [...series.filter((e) => !e.s.total), ...series.filter((e) => e.s.total)];
  for (const { s, colour, points } of ordered) {
    const d = [...points].sort((a, b) => a.x - b.x).map((p, i) => `${i ? "L" : "M"}${fixed(px(p.x))} ${fixed(py(p.y))}`).join(" ");
    const width = s.total ? 2.6 : 1.8;
    const dash = s.reference ? ` stroke-dasharray="6 4"` : "";
    out.push(`<path class="series" data-series="${escape(s.name)}" d="${d}" fill="none" stroke="${colour}" stroke-width="${width}"${dash} stroke-linejoin="round"/>`);
    // Markers show where the measurements are; on a dense time series they would only blur the line.
    if (!s.reference && points.length <= 30)
      for (const p of points)
        out.push(
          `<circle cx="${fixed(px(p.x))}" cy="${fixed(py(p.y))}" r="${s.total ? 3.5 : 3}" fill="${p.open ? "#fff" : colour}" stroke="${colour}" stroke-width="1.5"/>`,
        );
  }
  // Legend below the x label.
  rows.forEach((row, r) => {
    let x = plot.left;
    const y = plot.bottom + 52 + r * LEGEND_ROW;
    for (const name of row) {
      const e = series.find((q) => q.s.name === name)!;
      const dash = e.s.reference ? ` stroke-dasharray="6 4"` : "";
      out.push(`<line x1="${fixed(x)}" x2="${fixed(x + 20)}" y1="${y - 4}" y2="${y - 4}" stroke="${e.colour}" stroke-width="${e.s.total ? 2.6 : 2}"${dash}/>`);
      out.push(`<text x="${fixed(x + 26)}" y="${y}" font-size="11" fill="#333">${escape(name)}</text>`);
      x += 26 + textWidth(name, 11) + 14;
    }
  });
  return out;
}

/** The chart as a standalone SVG document, CHART_WIDTH × CHART_HEIGHT. */
export function renderChart(spec: ChartSpec): string {
  const xs = spec.panels.flatMap((p) => p.series.flatMap((s) => drawable(s.points, !!spec.xLog, !!p.yLog).map((q) => q.x)));
  const tickXs = (spec.xTicks ?? []).map((t) => t.x).filter((x) => !spec.xLog || x > 0);
  const all = [...xs, ...tickXs];
  const lo = all.length ? Math.min(...all) : spec.xLog ? 1 : 0;
  const hi = all.length ? Math.max(...all) : lo + 1;
  // Given ticks (the measured points) span the axis exactly; round-number ticks round it outwards.
  const xScale = spec.xLog ? logScale(lo, hi) : linearScale(lo, hi, lo >= 0);
  if (spec.xTicks?.length && hi > lo) Object.assign(xScale, { min: lo - (hi - lo) * 0.04, max: hi + (hi - lo) * 0.04 });
  if (spec.xTicks?.length && spec.xLog && hi > lo) Object.assign(xScale, { min: lo / 1.25, max: hi * 1.25 });

  const top = spec.subtitle ? 58 : 40;
  const n = Math.max(1, spec.panels.length);
  const panelW = (CHART_WIDTH - 2 * PAD - (n - 1) * GAP) / n;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${CHART_WIDTH}" height="${CHART_HEIGHT}" viewBox="0 0 ${CHART_WIDTH} ${CHART_HEIGHT}" font-family="${FONT}">`,
    `<rect width="${CHART_WIDTH}" height="${CHART_HEIGHT}" fill="#ffffff"/>`,
    `<text x="${PAD}" y="24" font-size="16" font-weight="700" fill="#111">${escape(spec.title)}</text>`,
  ];
  if (spec.subtitle) out.push(`<text x="${PAD}" y="43" font-size="11.5" fill="#555">${escape(spec.subtitle)}</text>`);
  const colourOf = colours(spec.panels);
  spec.panels.forEach((panel, i) => {
    out.push(...renderPanel(spec, panel, { x: PAD + i * (panelW + GAP), y: top, w: panelW, h: CHART_HEIGHT - top - 6 }, xScale, colourOf));
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

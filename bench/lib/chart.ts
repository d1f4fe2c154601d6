// A hand-written SVG line chart: latency (log scale) against offered load.

export interface Series {
  label: string;
  color: string;
  dashed?: boolean;
  points: { x: number; y: number }[];
}

export interface Marker {
  x: number;
  label: string;
  color: string;
}

const W = 860;
const H = 520;
const M = { left: 70, right: 250, top: 50, bottom: 60 };

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  return (n < 1.5 ? 1 : n < 3.5 ? 2 : n < 7.5 ? 5 : 10) * mag;
}

export function latencyChart(o: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  markers?: Marker[];
}): string {
  const pts = o.series.flatMap((s) => s.points).filter((p) => p.y > 0 && Number.isFinite(p.y));
  const xMax = Math.max(1, ...pts.map((p) => p.x), ...(o.markers ?? []).map((m) => m.x)) * 1.05;
  const yMinRaw = Math.min(...pts.map((p) => p.y), 1);
  const yMaxRaw = Math.max(...pts.map((p) => p.y), 10);
  const yLo = 10 ** Math.floor(Math.log10(yMinRaw));
  const yHi = 10 ** Math.ceil(Math.log10(yMaxRaw));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (x: number): number => M.left + (x / xMax) * pw;
  const sy = (y: number): number =>
    M.top + ph - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph;
  const f = (n: number): string => n.toFixed(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="28" font-size="16" font-weight="bold">${esc(o.title)}</text>`,
  );
  // y grid and ticks: decades, with 2 and 5 as minor lines
  for (let d = yLo; d <= yHi * 1.0001; d *= 10) {
    for (const k of [1, 2, 5]) {
      const v = d * k;
      if (v > yHi * 1.0001) break;
      const y = sy(v);
      out.push(
        `<line x1="${M.left}" x2="${M.left + pw}" y1="${f(y)}" y2="${f(y)}" stroke="${k === 1 ? '#ccc' : '#eee'}"/>`,
      );
      if (k === 1 || yHi / yLo <= 1000)
        out.push(
          `<text x="${M.left - 8}" y="${f(y + 4)}" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`,
        );
    }
  }
  // x grid and ticks
  const step = niceStep(xMax, 6);
  for (let v = 0; v <= xMax; v += step) {
    const x = sx(v);
    out.push(
      `<line x1="${f(x)}" x2="${f(x)}" y1="${M.top}" y2="${M.top + ph}" stroke="#eee"/>`,
      `<text x="${f(x)}" y="${M.top + ph + 18}" text-anchor="middle">${v >= 1000 ? `${v / 1000}k` : v}</text>`,
    );
  }
  // axes
  out.push(
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="black"/>`,
    `<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="black"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  // saturation markers
  for (const [i, m] of (o.markers ?? []).entries()) {
    const x = sx(m.x);
    out.push(
      `<line x1="${f(x)}" x2="${f(x)}" y1="${M.top}" y2="${M.top + ph}" stroke="${m.color}" stroke-dasharray="2 4"/>`,
      `<text x="${f(x - 4)}" y="${M.top + 12 + 14 * i}" text-anchor="end" fill="${m.color}" font-size="11">${esc(m.label)}</text>`,
    );
  }
  // series
  for (const s of o.series) {
    const p = s.points.filter((q) => q.y > 0 && Number.isFinite(q.y)).sort((a, b) => a.x - b.x);
    if (p.length === 0) continue;
    const d = p.map((q, i) => `${i ? 'L' : 'M'}${f(sx(q.x))} ${f(sy(q.y))}`).join(' ');
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      ...p.map(
        (q) =>
          `<circle cx="${f(sx(q.x))}" cy="${f(sy(q.y))}" r="3.5" fill="${s.dashed ? 'white' : s.color}" stroke="${s.color}" stroke-width="1.5"/>`,
      ),
    );
  }
  // legend
  const lx = M.left + pw + 20;
  o.series.forEach((s, i) => {
    const y = M.top + 10 + i * 22;
    out.push(
      `<line x1="${lx}" x2="${lx + 30}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<circle cx="${lx + 15}" cy="${y}" r="3.5" fill="${s.dashed ? 'white' : s.color}" stroke="${s.color}" stroke-width="1.5"/>`,
      `<text x="${lx + 38}" y="${y + 4}">${esc(s.label)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

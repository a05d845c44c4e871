/**
 * The risk card as the kernel sends it (`application/vnd.mlsec.riskcard+json`, DESIGN.md "The
 * risk-card bundle"), and its drawing with DOM APIs only.
 *
 * Every string from a card is user-controlled (column names, labels, paths, reprs) and reaches the
 * page through `textContent`, never `innerHTML`; attribute values are fixed words or numbers the code
 * computed. Plots are SVG and canvas elements built here from numbers that are checked to be finite.
 */

export const MIME = 'application/vnd.mlsec.riskcard+json';

export type Severity = 'critical' | 'high' | 'medium' | 'low' | 'info';
/** Most severe first. */
export const SEVERITIES: Severity[] = ['critical', 'high', 'medium', 'low', 'info'];

export interface IFinding {
  check: string;
  severity: Severity;
  title: string;
  summary: string;
  metrics: { [key: string]: unknown };
  n_indices?: number;
  recommendation?: string;
  references?: string[];
  target?: string;
}

export interface ICheckRun {
  check: string;
  target?: string;
  status: string;
  message?: string;
  seconds?: number | null;
  sampled?: string;
  progress?: number;
}

export interface ICard {
  version: number;
  card_id: string;
  subject: string;
  cell_id?: string | null;
  execution_count?: number | null;
  status: string;
  progress?: number;
  max_severity?: Severity | null;
  min_severity?: Severity;
  checks?: ICheckRun[];
  findings: IFinding[];
  /** What changed since the same cell's previous run (heading and one line a change). */
  changes?: { heading?: unknown; lines?: unknown } | null;
}

const LIST_SHOWN = 12;
const TEXT_SHOWN = 400;
const METRICS_SHOWN = 20;
const FINDINGS_SHOWN = 60;
/** Metrics drawn as pictures, never listed as numbers. */
const DRAWN = new Set(['plot', 'gauge', 'images', 'trigger_mask']);

/** The severity word if it is one of ours, else "info": only these words ever reach a class name. */
export function severityWord(value: unknown): Severity {
  return SEVERITIES.includes(value as Severity) ? (value as Severity) : 'info';
}

/** Severity rank: 0 for critical ... 4 for info (unknown words sort last). */
export function rank(severity: unknown): number {
  const i = SEVERITIES.indexOf(severity as Severity);
  return i < 0 ? SEVERITIES.length : i;
}

/** A card payload this renderer can draw (anything else is shown as "unreadable"). */
export function isCard(value: unknown): value is ICard {
  const card = value as ICard;
  return (
    !!card &&
    typeof card === 'object' &&
    typeof card.card_id === 'string' &&
    typeof card.subject === 'string' &&
    Array.isArray(card.findings) &&
    card.findings.every(f => !!f && typeof f === 'object' && typeof f.title === 'string')
  );
}

/** The card's check runs that are objects (a saved notebook may hold anything). */
function checkRuns(card: ICard): ICheckRun[] {
  return Array.isArray(card.checks) ? card.checks.filter(c => !!c && typeof c === 'object') : [];
}

/** The findings a card shows (at or above its `min_severity`), most severe first. */
export function shownFindings(card: ICard): IFinding[] {
  const floor = rank(card.min_severity ?? 'info');
  return card.findings
    .filter(f => rank(f.severity) <= floor)
    .sort((a, b) => rank(a.severity) - rank(b.severity));
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** At most ``limit`` characters (code points, so a surrogate pair is never split). */
export function cut(text: unknown, limit = TEXT_SHOWN): string {
  const chars = Array.from(typeof text === 'string' ? text : String(text ?? ''));
  return chars.length > limit ? chars.slice(0, limit - 1).join('') + '…' : chars.join('');
}

export function chip(severity: unknown): HTMLElement {
  const word = severityWord(severity);
  const node = el('span', `mlsec-chip mlsec-sev-${word}`, word);
  node.title = `severity: ${word}`;
  return node;
}

function formatNumber(v: number): string {
  if (Number.isInteger(v)) {
    return v.toLocaleString('en-US');
  }
  return Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

/** A metric value as one line of text: numbers rounded, lists and objects abbreviated. */
export function formatValue(v: unknown, depth = 0): string {
  if (v === null || v === undefined) {
    return '—';
  }
  if (typeof v === 'number') {
    return Number.isFinite(v) ? formatNumber(v) : String(v);
  }
  if (typeof v === 'boolean') {
    return v ? 'yes' : 'no';
  }
  if (typeof v === 'string') {
    return cut(v, 120);
  }
  if (depth > 1) {
    return '…';
  }
  if (Array.isArray(v)) {
    const shown = v.slice(0, LIST_SHOWN).map(x => formatValue(x, depth + 1));
    const more = v.length > LIST_SHOWN ? ` +${v.length - LIST_SHOWN} more` : '';
    return `[${shown.join(', ')}${more}]`;
  }
  if (typeof v === 'object') {
    const entries = Object.entries(v as object);
    const shown = entries.slice(0, LIST_SHOWN).map(([k, x]) => `${cut(k, 40)}: ${formatValue(x, depth + 1)}`);
    const more = entries.length > LIST_SHOWN ? ` +${entries.length - LIST_SHOWN} more` : '';
    return `{${shown.join(', ')}${more}}`;
  }
  return cut(String(v), 120);
}

function finiteNumbers(v: unknown, min = 2, max = 200): number[] | null {
  if (!Array.isArray(v) || v.length < min || v.length > max) {
    return null;
  }
  return v.every(x => typeof x === 'number' && Number.isFinite(x)) ? (v as number[]) : null;
}

const SVG = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: { [key: string]: string | number }) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, String(v));
  }
  return node;
}

/** `metrics.plot = {kind: "line", x: KEY, y: KEY, x_label, y_label, log_x}`: a line over two metrics. */
export function linePlot(metrics: { [key: string]: unknown }): HTMLElement | null {
  const spec = metrics.plot as { [key: string]: unknown } | undefined;
  if (!spec || typeof spec !== 'object' || spec.kind !== 'line') {
    return null;
  }
  const xs = finiteNumbers(metrics[String(spec.x)]);
  const ys = finiteNumbers(metrics[String(spec.y)]);
  const logX = !!spec.log_x;
  if (!xs || !ys || xs.length !== ys.length || (logX && xs.some(x => x <= 0))) {
    return null;
  }
  const tx = logX ? xs.map(Math.log10) : xs;
  const [w, h, pad] = [240, 96, 6];
  const [x0, x1] = [Math.min(...tx), Math.max(...tx)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
  const sy = (y: number) => h - pad - ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
  const box = el('div', 'mlsec-plot');
  const picture = svg('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  picture.appendChild(svg('rect', { x: 0.5, y: 0.5, width: w - 1, height: h - 1, class: 'mlsec-plot-frame' }));
  const points = tx.map((x, i) => `${sx(x).toFixed(1)},${sy(ys[i]).toFixed(1)}`).join(' ');
  picture.appendChild(svg('polyline', { points, class: 'mlsec-plot-line' }));
  tx.forEach((x, i) => picture.appendChild(svg('circle', { cx: sx(x), cy: sy(ys[i]), r: 2, class: 'mlsec-plot-dot' })));
  box.appendChild(picture);
  const yLabel = cut(spec.y_label ?? 'y', 60);
  const xLabel = cut(spec.x_label ?? 'x', 60) + (logX ? ' (log scale)' : '');
  box.appendChild(el('div', 'mlsec-plot-axis', `${yLabel}: ${formatNumber(y0)} – ${formatNumber(y1)}`));
  box.appendChild(
    el('div', 'mlsec-plot-axis', `${xLabel}: ${formatNumber(Math.min(...xs))} – ${formatNumber(Math.max(...xs))}`)
  );
  return box;
}

/** `metrics.gauge = {value, limit, label}`: a bar filled to value / limit, red past the limit. */
export function gauge(metrics: { [key: string]: unknown }): HTMLElement | null {
  const spec = metrics.gauge as { [key: string]: unknown } | undefined;
  if (!spec || typeof spec !== 'object') {
    return null;
  }
  const { value, limit } = spec;
  if (typeof value !== 'number' || typeof limit !== 'number' || !Number.isFinite(value) || !(limit > 0)) {
    return null;
  }
  const box = el('div', 'mlsec-gauge');
  const bar = el('div', 'mlsec-gauge-bar');
  const fill = el('div', value > limit ? 'mlsec-gauge-fill mlsec-over' : 'mlsec-gauge-fill');
  fill.style.width = `${Math.max(0, Math.min(100, (100 * value) / limit)).toFixed(1)}%`;
  bar.appendChild(fill);
  box.appendChild(bar);
  box.appendChild(
    el('div', 'mlsec-plot-axis', `${cut(spec.label ?? 'used', 60)}: ${formatNumber(value)} / ${formatNumber(limit)}`)
  );
  return box;
}

function greyCanvas(h: number, w: number, grey: (i: number) => number, px: number): HTMLCanvasElement {
  const canvas = el('canvas', 'mlsec-picture');
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${w * px}px`;
  canvas.style.height = `${h * px}px`;
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const image = ctx.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const g = Math.round(255 * Math.max(0, Math.min(1, grey(i))));
      image.data.set([g, g, g, 255], 4 * i);
    }
    ctx.putImageData(image, 0, 0);
  }
  return canvas;
}

/** `metrics.images = {kind: "images", shape: [h, w], pixels: [[h·w values in 0..1], ...], labels, caption}`. */
export function images(metrics: { [key: string]: unknown }): HTMLElement | null {
  const spec = metrics.images as { [key: string]: unknown } | undefined;
  if (!spec || typeof spec !== 'object' || spec.kind !== 'images') {
    return null;
  }
  const shape = finiteNumbers(spec.shape, 2, 2);
  const pixels = spec.pixels;
  if (!shape || !Array.isArray(pixels) || pixels.length < 1 || pixels.length > 10) {
    return null;
  }
  const [h, w] = shape;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1 || h > 64 || w > 64) {
    return null;
  }
  const grids = pixels.map(p => finiteNumbers(p, h * w, h * w));
  if (grids.some(g => g === null)) {
    return null;
  }
  const labels = Array.isArray(spec.labels) && spec.labels.length === pixels.length ? spec.labels : null;
  const box = el('div', 'mlsec-images');
  const px = Math.max(2, Math.min(8, Math.floor(64 / Math.max(h, w))));
  grids.forEach((g, k) => {
    const figure = el('figure', 'mlsec-image');
    figure.appendChild(greyCanvas(h, w, i => (g as number[])[i], px));
    if (labels) {
      figure.appendChild(el('figcaption', undefined, cut(labels[k], 24)));
    }
    box.appendChild(figure);
  });
  if (typeof spec.caption === 'string') {
    box.appendChild(el('div', 'mlsec-plot-axis', cut(spec.caption, 200)));
  }
  return box;
}

/** `metrics.trigger_mask`: an H×W grid of 0/1, the suspected backdoor trigger. */
export function triggerPicture(metrics: { [key: string]: unknown }): HTMLElement | null {
  const mask = metrics.trigger_mask;
  if (!Array.isArray(mask) || mask.length < 1 || mask.length > 64 || !Array.isArray(mask[0])) {
    return null;
  }
  const w = (mask[0] as unknown[]).length;
  const ok = w >= 1 && w <= 64 && mask.every(r => Array.isArray(r) && r.length === w && r.every(v => v === 0 || v === 1 || v === true || v === false));
  if (!ok) {
    return null;
  }
  const h = mask.length;
  const px = Math.max(3, Math.min(14, Math.floor(160 / Math.max(h, w))));
  const box = el('div', 'mlsec-trigger');
  box.appendChild(greyCanvas(h, w, i => (mask[Math.floor(i / w)][i % w] ? 0 : 0.92), px));
  box.appendChild(el('div', 'mlsec-plot-axis', 'suspected trigger (dark pixels)'));
  return box;
}

function metricsTable(metrics: { [key: string]: unknown }): HTMLElement | null {
  const entries = Object.entries(metrics).filter(([k]) => !DRAWN.has(k));
  if (!entries.length) {
    return null;
  }
  const table = el('table', 'mlsec-metrics');
  for (const [key, value] of entries.slice(0, METRICS_SHOWN)) {
    const row = el('tr');
    row.appendChild(el('th', undefined, cut(key, 60)));
    row.appendChild(el('td', undefined, formatValue(value)));
    table.appendChild(row);
  }
  if (entries.length > METRICS_SHOWN) {
    const row = el('tr');
    const cell = el('td', 'mlsec-more', `+${entries.length - METRICS_SHOWN} more metrics`);
    cell.colSpan = 2;
    row.appendChild(cell);
    table.appendChild(row);
  }
  return table;
}

/** One finding: a line that opens on its evidence. ``showTarget``: the card covers several subjects. */
export function renderFinding(f: IFinding, showTarget = false): HTMLElement {
  const item = el('details', `mlsec-finding mlsec-sev-${severityWord(f.severity)}`);
  const head = el('summary', 'mlsec-finding-head');
  head.appendChild(chip(f.severity));
  head.appendChild(el('span', 'mlsec-finding-title', cut(f.title, 300)));
  if (showTarget && f.target) {
    head.appendChild(el('span', 'mlsec-target-tag', cut(f.target, 60)));
  }
  head.appendChild(el('span', 'mlsec-check', cut(f.check, 60)));
  item.appendChild(head);
  const body = el('div', 'mlsec-finding-body');
  if (f.target) {
    body.appendChild(el('div', 'mlsec-target', `about: ${cut(f.target, 120)}`));
  }
  body.appendChild(el('p', 'mlsec-summary', cut(f.summary, 2000)));
  const metrics = f.metrics && typeof f.metrics === 'object' ? f.metrics : {};
  const pictures = [linePlot(metrics), gauge(metrics), images(metrics), triggerPicture(metrics)].filter(
    (x): x is HTMLElement => x !== null
  );
  if (pictures.length) {
    const row = el('div', 'mlsec-pictures');
    pictures.forEach(p => row.appendChild(p));
    body.appendChild(row);
  }
  if (f.recommendation) {
    const rec = el('p', 'mlsec-recommendation');
    rec.appendChild(el('strong', undefined, 'What to do: '));
    rec.appendChild(document.createTextNode(cut(f.recommendation, 2000)));
    body.appendChild(rec);
  }
  const table = metricsTable(metrics);
  if (table) {
    body.appendChild(table);
  }
  if (typeof f.n_indices === 'number' && f.n_indices > 0) {
    body.appendChild(el('div', 'mlsec-indices', `${f.n_indices.toLocaleString('en-US')} rows flagged (indices in the card JSON)`));
  }
  if (Array.isArray(f.references) && f.references.length) {
    const refs = el('ul', 'mlsec-references');
    f.references.slice(0, 12).forEach(r => refs.appendChild(el('li', undefined, cut(r, 160))));
    body.appendChild(refs);
  }
  item.appendChild(body);
  return item;
}

/** "40%: PGD at ε 0.1" for a running check that reports progress. */
function runningText(run: ICheckRun): string {
  const name = cut(run.check, 60);
  const share = share01(run.progress);
  if (share > 0 || run.message) {
    return `${name} (${Math.round(100 * share)}%${run.message ? ': ' + cut(run.message, 60) : ''})`;
  }
  return name;
}

/** A progress share in [0, 1]; anything else (NaN, a string, -3) is 0. */
function share01(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? Math.max(0, Math.min(1, value)) : 0;
}

function progressBlock(card: ICard): HTMLElement {
  const box = el('div', 'mlsec-progress');
  const bar = el('div', 'mlsec-progress-bar');
  const fill = el('div', 'mlsec-progress-fill');
  fill.style.width = `${Math.max(2, 100 * share01(card.progress)).toFixed(1)}%`;
  bar.appendChild(fill);
  box.appendChild(bar);
  const running = checkRuns(card).filter(c => c.status === 'running' || c.status === 'pending');
  if (running.length) {
    const names = running.slice(0, 4).map(runningText).join(', ');
    const more = running.length > 4 ? ` +${running.length - 4} more` : '';
    box.appendChild(el('div', 'mlsec-waiting', `Still running: ${names}${more}`));
  }
  return box;
}

/** "Changed since the last run [3]" and one line a change (new, resolved, severity and metric moves). */
export function changesBlock(card: ICard): HTMLElement | null {
  const changes = card.changes;
  if (!changes || typeof changes !== 'object' || typeof changes.heading !== 'string') {
    return null;
  }
  const box = el('div', 'mlsec-changes');
  box.appendChild(el('strong', undefined, cut(changes.heading, 120)));
  const lines = Array.isArray(changes.lines) ? changes.lines.filter(l => typeof l === 'string') : [];
  if (lines.length) {
    const list = el('ul');
    lines.slice(0, 20).forEach(line => list.appendChild(el('li', undefined, cut(line, 300))));
    box.appendChild(list);
  }
  return box;
}

/** Checks that did not finish cleanly (failed, timed out, cancelled, skipped), one line each. */
function problemRuns(card: ICard): HTMLElement | null {
  const runs = checkRuns(card).filter(c => !['done', 'running', 'pending'].includes(c.status));
  if (!runs.length) {
    return null;
  }
  const box = el('details', 'mlsec-runs');
  box.appendChild(el('summary', undefined, `${runs.length} check(s) did not run to the end`));
  const list = el('ul');
  runs.slice(0, 40).forEach(r =>
    list.appendChild(el('li', undefined, `${cut(r.check, 60)}: ${cut(r.status, 20)}${r.message ? ' — ' + cut(r.message, 200) : ''}`))
  );
  box.appendChild(list);
  return box;
}

export function countBySeverity(findings: IFinding[]): Map<Severity, number> {
  const counts = new Map<Severity, number>();
  for (const f of findings) {
    const word = severityWord(f.severity);
    counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return counts;
}

/** "150 × 4 · fingerprint 581e6c0d…" from the integrity and provenance findings, when the card has them. */
function subjectFacts(card: ICard): string {
  const parts: string[] = [];
  const integrity = card.findings.find(f => f.check === 'data.integrity');
  const rows = integrity?.metrics?.n_rows;
  const cols = integrity?.metrics?.n_features;
  if (typeof rows === 'number' && typeof cols === 'number') {
    parts.push(`${formatNumber(rows)} × ${formatNumber(cols)}`);
  }
  const sha = card.findings.find(f => f.check === 'data.provenance')?.metrics?.sha;
  if (typeof sha === 'string' && /^[0-9a-f]{12,}$/.test(sha)) {
    parts.push(`fingerprint ${sha.slice(0, 12)}…`);
  }
  return parts.join(' · ');
}

/** The whole card. */
export function renderCard(card: ICard): HTMLElement {
  const running = card.status === 'running';
  const findings = shownFindings(card);
  const worst = findings.length ? severityWord(findings[0].severity) : 'info';
  const root = el('div', `mlsec-rc mlsec-rc-${running ? 'running' : 'done'} mlsec-sev-${worst}`);
  root.dataset.cardId = /^[A-Za-z0-9_-]{1,64}$/.test(card.card_id) ? card.card_id : '';
  const head = el('div', 'mlsec-rc-head');
  head.appendChild(chip(worst));
  head.appendChild(el('span', 'mlsec-rc-title', 'ML security'));
  head.appendChild(el('span', 'mlsec-rc-subject', cut(card.subject, 200)));
  const facts = subjectFacts(card);
  if (facts) {
    head.appendChild(el('span', 'mlsec-rc-facts', facts));
  }
  const counts = countBySeverity(findings);
  const summary = SEVERITIES.filter(s => counts.has(s) && s !== 'info')
    .map(s => `${counts.get(s)} ${s}`)
    .join(' · ');
  head.appendChild(
    el('span', 'mlsec-rc-counts', running ? 'checking…' : summary || 'no problems found')
  );
  root.appendChild(head);
  if (running) {
    root.appendChild(progressBlock(card));
  }
  const changed = changesBlock(card);
  if (changed) {
    root.appendChild(changed);
  }
  const list = el('div', 'mlsec-findings');
  const several = new Set(findings.map(f => f.target ?? '')).size > 1;
  const issues = findings.filter(f => severityWord(f.severity) !== 'info');
  issues.slice(0, FINDINGS_SHOWN).forEach(f => list.appendChild(renderFinding(f, several)));
  if (issues.length > FINDINGS_SHOWN) {
    list.appendChild(el('div', 'mlsec-more', `+${issues.length - FINDINGS_SHOWN} more findings (all in the card JSON)`));
  }
  const clean = findings.filter(f => severityWord(f.severity) === 'info').slice(0, FINDINGS_SHOWN);
  if (clean.length) {
    // "checked and found nothing" lines, folded: they matter less than the findings above
    const fold = el('details', 'mlsec-clean');
    fold.appendChild(el('summary', undefined, `${clean.length} check result(s) with nothing wrong`));
    clean.forEach(f => fold.appendChild(renderFinding(f, several)));
    list.appendChild(fold);
  }
  root.appendChild(list);
  const runs = problemRuns(card);
  if (runs) {
    root.appendChild(runs);
  }
  return root;
}

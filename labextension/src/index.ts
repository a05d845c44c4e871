/**
 * The "ML security" sidebar and status-bar item.
 *
 * Both read the risk cards from the current notebook's outputs (the `application/vnd.mlsec.riskcard+json`
 * data of each output), so they work on a saved notebook reopened without a kernel. The sidebar lists
 * every finding grouped by severity and subject, with a text filter and a minimum severity; a click
 * scrolls to the cell the card is under. The status item shows the counts by severity and opens the
 * sidebar. All card strings reach the page through `textContent` (see card.ts).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import {
  ICard,
  IFinding,
  MIME,
  SEVERITIES,
  Severity,
  chip,
  countBySeverity,
  cut,
  el,
  isCard,
  rank,
  severityWord,
  shownFindings
} from './card';

export const SIDEBAR_ID = 'mlsec-risk-sidebar';

/** One finding in the notebook, with where its card is. */
export interface INotebookFinding {
  finding: IFinding;
  card: ICard;
  cellIndex: number;
}

/** Every finding of the notebook's cards, in cell order. A card shown twice (a copied cell, a card shown
 * again) counts once, at its last place. */
export function notebookFindings(panel: NotebookPanel | null): INotebookFinding[] {
  const cells = panel?.content.model?.cells;
  if (!cells) {
    return [];
  }
  const last = new Map<string, { card: ICard; cellIndex: number }>();
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') {
      continue;
    }
    const outputs = (cell as unknown as { outputs: { length: number; get(j: number): { data: { [k: string]: unknown } } } })
      .outputs;
    for (let j = 0; j < outputs.length; j++) {
      const data = outputs.get(j).data[MIME];
      if (isCard(data)) {
        last.delete(data.card_id);
        last.set(data.card_id, { card: data, cellIndex: i });
      }
    }
  }
  const out: INotebookFinding[] = [];
  for (const { card, cellIndex } of [...last.values()].sort((a, b) => a.cellIndex - b.cellIndex)) {
    for (const finding of shownFindings(card)) {
      out.push({ finding, card, cellIndex });
    }
  }
  return out;
}

/** Calls `fn` at most once every 100 ms however often the notebook changes. */
function throttled(fn: () => void): () => void {
  let pending = false;
  return () => {
    if (!pending) {
      pending = true;
      window.setTimeout(() => {
        pending = false;
        fn();
      }, 100);
    }
  };
}

/** Follows the current notebook: calls `changed` when it or its outputs change. */
class NotebookWatcher {
  constructor(private tracker: INotebookTracker, changed: () => void) {
    this.changed = throttled(changed);
    tracker.currentChanged.connect(this.follow, this);
    this.follow();
  }

  get panel(): NotebookPanel | null {
    return this.tracker.currentWidget;
  }

  private follow(): void {
    this.current?.model?.contentChanged.disconnect(this.changed);
    this.current = this.tracker.currentWidget;
    this.current?.model?.contentChanged.connect(this.changed);
    void this.current?.context.ready.then(() => this.changed());
    this.changed();
  }

  private current: NotebookPanel | null = null;
  private changed: () => void;
}

export class RiskSidebar extends Widget {
  constructor(tracker: INotebookTracker) {
    super();
    this.id = SIDEBAR_ID;
    this.addClass('mlsec-sidebar');
    this.title.caption = 'ML security';
    this.title.label = 'ML security';
    const controls = el('div', 'mlsec-sb-controls');
    this.filter = el('input', 'mlsec-sb-filter');
    this.filter.type = 'search';
    this.filter.placeholder = 'Filter findings';
    this.filter.addEventListener('input', () => this.render());
    this.minimum = el('select', 'mlsec-sb-minimum');
    for (const s of SEVERITIES) {
      const option = el('option', undefined, s === 'info' ? 'all severities' : `${s} and above`);
      option.value = s;
      this.minimum.appendChild(option);
    }
    this.minimum.value = 'low';
    this.minimum.addEventListener('change', () => this.render());
    controls.append(this.filter, this.minimum);
    this.list = el('div', 'mlsec-sb-list');
    this.node.append(el('h2', 'mlsec-sb-title', 'ML security'), controls, this.list);
    this.watcher = new NotebookWatcher(tracker, () => this.render());
  }

  protected onAfterShow(): void {
    this.render();
  }

  render(): void {
    if (!this.isVisible) {
      return; // drawn when shown (onAfterShow)
    }
    const panel = this.watcher.panel;
    const floor = rank(this.minimum.value);
    const words = this.filter.value.trim().toLowerCase();
    const items = notebookFindings(panel).filter(
      x =>
        rank(x.finding.severity) <= floor &&
        (!words ||
          `${x.finding.title} ${x.finding.check} ${x.finding.target ?? ''} ${x.card.subject} ${x.finding.summary}`
            .toLowerCase()
            .includes(words))
    );
    this.list.textContent = '';
    if (!panel) {
      this.list.appendChild(el('p', 'mlsec-sb-empty', 'Open a notebook to see its findings.'));
      return;
    }
    if (!items.length) {
      this.list.appendChild(el('p', 'mlsec-sb-empty', 'No findings in this notebook at this level.'));
      return;
    }
    for (const severity of SEVERITIES) {
      const group = items.filter(x => severityWord(x.finding.severity) === severity);
      if (!group.length) {
        continue;
      }
      const section = el('section', `mlsec-sb-group mlsec-sev-${severity}`);
      const head = el('h3', 'mlsec-sb-group-head');
      head.append(chip(severity), el('span', undefined, ` ${group.length}`));
      section.appendChild(head);
      const subjectOf = (x: INotebookFinding) => cut(x.finding.target || x.card.subject, 120);
      const subjects = [...new Set(group.map(subjectOf))];
      for (const subject of subjects) {
        section.appendChild(el('div', 'mlsec-sb-subject', subject));
        for (const x of group.filter(g => subjectOf(g) === subject)) {
          section.appendChild(this.item(panel, x));
        }
      }
      this.list.appendChild(section);
    }
  }

  private item(panel: NotebookPanel, x: INotebookFinding): HTMLElement {
    const button = el('button', 'mlsec-sb-finding');
    button.type = 'button';
    button.dataset.severity = severityWord(x.finding.severity);
    button.dataset.cellIndex = String(x.cellIndex);
    button.append(el('span', 'mlsec-sb-finding-title', cut(x.finding.title, 300)), el('span', 'mlsec-check', cut(x.finding.check, 60)));
    button.title = `Cell ${x.cellIndex + 1}: ${cut(x.finding.title, 300)}`;
    button.addEventListener('click', () => {
      const notebook = panel.content;
      notebook.activeCellIndex = x.cellIndex;
      const cell = notebook.widgets[x.cellIndex];
      if (cell) {
        void notebook.scrollToCell(cell, 'center');
      }
    });
    return button;
  }

  private filter: HTMLInputElement;
  private minimum: HTMLSelectElement;
  private list: HTMLElement;
  private watcher: NotebookWatcher;
}

/** "ML security: 1 critical · 2 high"; a click opens the sidebar. */
export class RiskStatus extends Widget {
  constructor(tracker: INotebookTracker, open: () => void) {
    super();
    this.addClass('mlsec-status');
    this.node.title = 'ML security findings in this notebook (click for the list)';
    this.node.addEventListener('click', open);
    this.watcher = new NotebookWatcher(tracker, () => this.render());
  }

  render(): void {
    const counts = countBySeverity(notebookFindings(this.watcher.panel).map(x => x.finding));
    this.node.textContent = '';
    this.node.appendChild(el('span', 'mlsec-status-label', 'ML security:'));
    const shown = SEVERITIES.filter(s => s !== 'info' && counts.has(s));
    if (!shown.length) {
      this.node.appendChild(el('span', 'mlsec-status-none', ' no findings'));
    }
    for (const s of shown) {
      const item = el('span', `mlsec-status-count mlsec-sev-${s}`, ` ${counts.get(s)} ${s}`);
      item.dataset.severity = s;
      this.node.appendChild(item);
    }
  }

  private watcher: NotebookWatcher;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlsec-jupyter:sidebar',
  description: 'ML security findings of the current notebook: sidebar and status-bar item.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, statusBar: IStatusBar | null) => {
    const sidebar = new RiskSidebar(tracker);
    app.shell.add(sidebar, 'right', { rank: 900 });
    if (statusBar) {
      const status = new RiskStatus(tracker, () => app.shell.activateById(SIDEBAR_ID));
      statusBar.registerStatusItem('mlsec-jupyter:status', {
        item: status,
        align: 'left',
        rank: 4,
        isActive: () => tracker.currentWidget !== null && tracker.currentWidget === app.shell.currentWidget
      });
    }
  }
};

export default plugin;

export type { Severity };

/**
 * The MIME renderer: draws `application/vnd.mlsec.riskcard+json` with DOM APIs (see card.ts). Rank 0,
 * so JupyterLab prefers it to the card's `text/html` fallback, which other front ends show.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { MIME, el, isCard, renderCard } from './card';

export class RiskCardRenderer extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('mlsec-RiskCardOutput');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[MIME];
    this.node.textContent = '';
    let card: HTMLElement | null = null;
    try {
      card = isCard(data) ? renderCard(data) : null;
    } catch (error) {
      console.warn('mlsec-jupyter: a risk card could not be drawn', error);
    }
    this.node.appendChild(card ?? el('div', 'mlsec-rc', 'mlsec-jupyter: this risk card could not be read.'));
    return Promise.resolve();
  }
}

const extension: IRenderMime.IExtension = {
  id: 'mlsec-jupyter:riskcard',
  description: 'Renders mlsec-jupyter risk cards.',
  rendererFactory: {
    safe: true,
    mimeTypes: [MIME],
    createRenderer: () => new RiskCardRenderer()
  },
  rank: 0,
  dataType: 'json'
};

export default extension;

// <spatialtwin-product>: the product viewer for any shop page, in an iframe of its own.
//
//   <script type="module" src="https://<spatialtwin host>/web/embed.js"></script>
//   <spatialtwin-product sku="ST-SKIRT-1" size="M" viewer="model-viewer"
//                        style="width: 100%; height: 720px"></spatialtwin-product>
//
// Attributes: sku (required), twin, size, channel (ecommerce | ar), viewer (three |
// model-viewer). The iframe may enter AR (xr-spatial-tracking) and fullscreen; the page inside
// is /web/product.html?embed=1 on the server this script came from, so the shop's page needs
// no other code and its styles never reach the viewer.
const ATTRIBUTES = ['sku', 'twin', 'size', 'channel', 'viewer'];
const ORIGIN = new URL(import.meta.url).origin;

class SpatialTwinProduct extends HTMLElement {
  static get observedAttributes() {
    return ATTRIBUTES;
  }

  connectedCallback() {
    if (!this.frame) {
      this.frame = document.createElement('iframe');
      this.frame.title = this.getAttribute('title') || 'The garment on a digital twin, in 3D';
      this.frame.allow = 'xr-spatial-tracking; fullscreen';
      this.frame.loading = 'lazy';
      Object.assign(this.frame.style, { border: '0', width: '100%', height: '100%', display: 'block' });
      if (!this.style.display) this.style.display = 'block';
      this.append(this.frame);
    }
    this.update();
  }

  attributeChangedCallback() {
    if (this.frame) this.update();
  }

  update() {
    const q = new URLSearchParams({ embed: '1' });
    for (const name of ATTRIBUTES) {
      const value = this.getAttribute(name);
      if (value) q.set(name, value);
    }
    this.frame.src = `${ORIGIN}/web/product.html?${q}`;
  }
}

if (!customElements.get('spatialtwin-product')) customElements.define('spatialtwin-product', SpatialTwinProduct);

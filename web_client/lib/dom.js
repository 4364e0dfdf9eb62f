// DOM helpers the pages share: build elements without innerHTML (API text is never markup),
// status chips, fact lists, and the page's elements by id.
//
//   el('a', { className: 'twin-item', href, 'data-twin-id': id }, el('span', { text: name }))
//   facts([['Height', '176.0 cm', 'detail-height']])   // <dl class="facts">, the id on the <dd>

// An element with attributes and children. `className` and `text` set those properties; null,
// undefined and false attributes are left out, true sets an empty one; children that are not
// nodes become text.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'className') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A small rounded label; `tone` ('ok', 'warn', 'bad') colours it.
export function chip(text, tone) {
  return el('span', { className: tone ? `chip chip-${tone}` : 'chip', text });
}

// A <dl class="facts"> of [term, value, id?] rows; a missing value shows as a dash.
export function facts(rows) {
  const dl = el('dl', { className: 'facts' });
  for (const [term, value, id] of rows) {
    dl.append(el('dt', { text: term }), el('dd', { id }, value ?? '—'));
  }
  return dl;
}

// The page's elements by id, as an object with the same keys: byIds({ list: 'twin-list' }).
export function byIds(ids) {
  return Object.fromEntries(Object.entries(ids).map(([key, id]) => [key, document.getElementById(id)]));
}

// Centimetres with one decimal ("176.0 cm"), a dash for anything that is not a finite number.
export function formatCentimetres(metres) {
  if (typeof metres !== 'number' || !Number.isFinite(metres)) return '—';
  return `${(metres * 100).toFixed(1)} cm`;
}

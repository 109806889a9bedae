// Token view front end: the prompt's tokens in a row, each on the colour of its value, with a
// tooltip (position, exact value, meaning) and a legend. Plain ESM with no imports.

function decode(v) {
  const d = v.data;
  const bytes = new Uint8Array(d.buffer ?? d, d.byteOffset ?? 0, d.byteLength);
  return new Float32Array(bytes.slice().buffer);
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// the same rule as nbvene.figures.palette.colour
export function colour(value, stops, [lo, centre, hi]) {
  if (!Number.isFinite(value)) return "#bdbdbd";
  let t = 0.5 + (value - centre) / (2 * (hi - centre));
  t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(Math.floor(t), stops.length - 2);
  const f = t - i;
  const rgb = stops[i].map((a, k) => roundHalfEven(a + (stops[i + 1][k] - a) * f));
  return "#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join("");
}

// dark cells get white text (relative luminance of the background)
function ink(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45 ? "#fff" : "#111";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// the signs of nbvene.figures.view.visible: " Paris\n" -> "␣Paris↵", controls as \x1b
const WHITESPACE = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍" };
function visible(text) {
  return Array.from(String(text), (ch) => {
    const c = ch.codePointAt(0);
    const printable = c >= 0x20 && !(c >= 0x7f && c <= 0x9f) && !(c >= 0xd800 && c <= 0xdfff) &&
      c !== 0xfffe && c !== 0xffff;
    return WHITESPACE[ch] ?? (printable ? ch : `\\x${c.toString(16).padStart(2, "0")}`);
  }).join("");
}

function render({ model, el: host }) {
  const root = el("div", "nbvene-heatmap nbvene-tokens");
  root.dataset.testid = "tokens";
  host.appendChild(root);

  function draw() {
    const tokens = model.get("tokens") || [], positions = model.get("positions") || [];
    const values = decode(model.get("values"));
    const stops = model.get("stops"), scale = model.get("scale");
    const title = el("div", "nv-facet-title", model.get("title") || "");
    const line = el("div", "nv-token-line");
    tokens.forEach((t, i) => {
      const span = el("span", "nv-token", visible(t)); // textContent: markup stays text
      const bg = colour(values[i], stops, scale);
      span.style.background = bg;
      span.style.color = ink(bg);
      span.dataset.testid = "token";
      span.dataset.pos = positions[i];
      span.dataset.value = String(values[i]);
      span.title = `pos ${positions[i]} ${JSON.stringify(t)}\n` +
        `${model.get("metric")} = ${Number(values[i].toPrecision(7))}\n${model.get("meaning")}`;
      line.appendChild(span);
    });
    const [lo, centre, hi] = scale;
    const legend = el("div", "nv-legend-text",
      `${model.get("metric")}: ${lo.toPrecision(3)} … ${hi.toPrecision(3)} · centre: ${model.get("centre_meaning")}`);
    legend.dataset.testid = "tokens-legend";
    root.replaceChildren(title, line, legend);
  }
  const names = ["change:values", "change:tokens", "change:scale"];
  names.forEach((n) => model.on(n, draw));
  draw();
  return () => names.forEach((n) => model.off(n, draw));
}

export default { render };

// Helpers every nbvene widget uses: array bytes, the palette, visible whitespace, elements.
// anywidget takes one ESM string, so nbvene.widgets.frontend.esm joins this file in front of
// each widget's own (heatmap.js, panel.js, tokens.js); it has no imports, and neither do they.

// Bytes from the kernel ({shape, dtype, data}) as a typed array; `data` is a DataView in
// anywidget, and a Uint8Array or ArrayBuffer in other hosts.
export function decode(v) {
  const data = v.data;
  const buffer = data.buffer ?? data;
  const offset = data.byteOffset ?? 0;
  const Type = { float32: Float32Array, float64: Float64Array, int32: Int32Array,
                 uint8: Uint8Array }[v.dtype];
  const n = v.shape.reduce((a, b) => a * b, 1);
  const aligned = offset % Type.BYTES_PER_ELEMENT === 0;
  const src = aligned ? buffer : buffer.slice(offset, offset + n * Type.BYTES_PER_ELEMENT);
  return { shape: v.shape, array: new Type(src, aligned ? offset : 0, n) };
}

// Python's round(): half to even, so the browser and the static SVG pick the same colour.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export const MISSING = "#bdbdbd";

// The colour of a value on the scale [lo, centre, hi]: the same rule as
// nbvene.figures.palette.colour (linear between the stops, one slope on both sides of the
// centre, clamped, MISSING for NaN).
export function colour(value, stops, [lo, centre, hi]) {
  if (!Number.isFinite(value)) return MISSING;
  const half = Math.max(hi - centre, centre - lo) || 1;
  let t = 0.5 + (value - centre) / (2 * half);
  t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(Math.floor(t), stops.length - 2);
  const f = t - i;
  const rgb = stops[i].map((a, k) => roundHalfEven(a + (stops[i + 1][k] - a) * f));
  return "#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join("");
}

// Whether the page around `node` is dark (JupyterLab Dark, VS Code dark): JupyterLab says so
// on <body data-jp-theme-light="false">; elsewhere the luminance of the nearest background.
export function isDark(node) {
  const light = document.body?.dataset?.jpThemeLight;
  if (light !== undefined) return light === "false";
  for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
    const m = getComputedStyle(n).backgroundColor.match(/[\d.]+/g);
    if (m && (m.length < 4 || +m[3] > 0)) {
      return 0.2126 * m[0] + 0.7152 * m[1] + 0.0722 * m[2] < 128;
    }
  }
  return false;
}

// Visible whitespace, the signs of nbvene.figures.view.visible: " Paris\n" shows as "␣Paris↵";
// other control characters as \x1b escapes. Text is only ever set with textContent, so a
// token like "<script>" stays text.
const WHITESPACE = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍" };
const printable = (ch) => {
  const c = ch.codePointAt(0);
  return c >= 0x20 && !(c >= 0x7f && c <= 0x9f) && !(c >= 0xd800 && c <= 0xdfff) &&
    c !== 0xfffe && c !== 0xffff;
};
const escape = (ch) => `\\x${ch.codePointAt(0).toString(16).padStart(2, "0")}`;
// the sign a character shows as, or null where it shows as itself
const sign = (ch) => WHITESPACE[ch] ?? (printable(ch) ? null : escape(ch));

// The text with its signs, as one string.
export function visible(text) {
  return Array.from(String(text), (ch) => sign(ch) ?? ch).join("");
}

// The text as nodes: plain runs, and each sign in a dimmed span.nbvene-ws.
export function tokenNodes(text) {
  const out = [];
  let plain = "";
  const flush = () => { if (plain) out.push(document.createTextNode(plain)); plain = ""; };
  for (const ch of String(text)) {
    const shown = sign(ch);
    if (shown === null) { plain += ch; continue; }
    flush();
    const ws = document.createElement("span");
    ws.className = "nbvene-ws";
    ws.textContent = shown;
    out.push(ws);
  }
  flush();
  return out;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Token view front end: the prompt's tokens in a row, each on the colour of its value, with a
// tooltip (position, exact value, meaning) and a legend. Plain ESM with no imports, joined after
// shared.js when it loads.

// dark cells get white text (relative luminance of the background)
function ink(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45 ? "#fff" : "#111";
}

function render({ model, el: host }) {
  const root = el("div", "nbvene-heatmap nbvene-tokens");
  root.dataset.testid = "tokens";
  host.appendChild(root);

  function draw() {
    const tokens = model.get("tokens") || [], positions = model.get("positions") || [];
    const values = decode(model.get("values")).array;
    const stops = (isDark(host) && model.get("stops_dark")) || model.get("stops");
    const scale = model.get("scale");
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

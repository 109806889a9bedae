// The circuit graph widget (nbvene.circuits.widget.CircuitGraph): components placed by the
// kernel (the same layout as the static SVG), the strongest `size` edges drawn as curves
// weighted and coloured by score, a slider over the sizes whose faithfulness was measured,
// hover for an edge's name and score, a click or Enter on a component for its layer's node
// scores (the edges not touching it fade). Everything is answered here from the arrays sent
// once: no kernel round-trip.
// shared.js is joined in front of this file (decode, colour, el).

const SVGNS = "http://www.w3.org/2000/svg";
const PORT_OFFSET = { q: -0.3, k: 0, v: 0.3, in: 0 };  // as nbvene.circuits.svg.PORT_OFFSET

function svgEl(tag, attrs = {}, cls) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (cls) e.setAttribute("class", cls);
  return e;
}

// Python's format(x, "+.4g") closely enough for tooltips: 4 significant digits, a sign.
function signed(x) {
  if (!Number.isFinite(x)) return "nan";
  const s = Number(x.toPrecision(4)).toString();
  return x >= 0 ? "+" + s : s;
}
const fmt3 = (x) => (Number.isFinite(x) ? Number(x.toPrecision(3)).toString() : "nan");

function read(model) {
  const nodes = model.get("nodes");
  const info = decode(model.get("node_info")).array;
  const boxes = decode(model.get("node_boxes")).array;
  const nodeScores = decode(model.get("node_scores")).array;
  const words = decode(model.get("edges")).array;
  const scores = decode(model.get("scores")).array;
  const kept = decode(model.get("kept")).array;
  const kinds = model.get("kinds"), ports = model.get("ports");
  // each edge packed as sender << 17 | receiver << 2 | port (nbvene.circuits.widget.pack)
  const E = words.length;
  const edges = new Int32Array(3 * E);
  for (let i = 0; i < E; i++) {
    const w = words[i] >>> 0;
    edges[3 * i] = w >>> 17;
    edges[3 * i + 1] = (w >>> 2) & 0x7fff;
    edges[3 * i + 2] = w & 3;
  }
  // largest |score| first, ties in graph order: the same order as Circuit.order()
  const magnitude = (i) => (Number.isFinite(scores[i]) ? Math.abs(scores[i]) : 0);
  const order = Int32Array.from({ length: E }, (_, i) => i)
    .sort((a, b) => magnitude(b) - magnitude(a) || a - b);
  const edgeName = (i) => {
    const port = ports[edges[3 * i + 2]];
    const into = nodes[edges[3 * i + 1]] + (port === "in" ? "" : "." + port);
    return `${nodes[edges[3 * i]]} -> ${into}`;
  };
  return { nodes, info, boxes, nodeScores, edges, scores, order, kept, kinds, ports, edgeName };
}

// The faithfulness at `size` edges: the circuit's own at its own size, else the curve's.
function faithAt(model, size) {
  if (size === model.get("kept_size") && model.get("faithfulness") !== null) {
    return model.get("faithfulness");
  }
  const found = model.get("curve").find(([n]) => n === size);
  return found && found[1] !== null ? found[1] : null;
}

// The edges drawn at `size`: the circuit's own at its own size, else the `size` strongest;
// at most max_drawn of them, weakest first so the strongest lie on top.
function drawnAt(model, g, size) {
  const E = g.scores.length;
  let chosen;
  if (size === model.get("kept_size")) {
    const kept = new Set(g.kept);
    chosen = Array.from(g.order).filter((i) => kept.has(i));
  } else {
    chosen = Array.from(g.order.subarray(0, Math.min(size, E)));
  }
  return chosen.slice(0, model.get("max_drawn")).reverse();
}

function render({ model, el: host }) {
  const g = read(model);
  const root = host.appendChild(document.createElement("div"));
  root.className = "nbvene-circuit";
  root.dataset.testid = "circuit";
  const head = root.appendChild(document.createElement("div"));
  head.className = "nv-circuit-title";
  head.dataset.testid = "circuit-title";
  const title = [model.get("method") + " circuit", model.get("metric")].filter(Boolean);
  head.textContent = title.join(" · ") + ` · ${g.scores.length.toLocaleString("en")} edges scored`;

  // the slider: over the measured sizes when there is a curve, else over every size
  const controls = root.appendChild(document.createElement("div"));
  controls.className = "nv-circuit-controls";
  const label = controls.appendChild(document.createElement("label"));
  label.textContent = "edges kept ";
  const slider = label.appendChild(document.createElement("input"));
  slider.type = "range";
  slider.dataset.testid = "circuit-slider";
  slider.dataset.lmSuppressShortcuts = "true";  // else JupyterLab's command mode eats arrows
  slider.setAttribute("aria-label", "number of edges kept");
  const sizes = model.get("sizes");
  if (sizes.length) {
    slider.min = 0; slider.max = sizes.length - 1; slider.step = 1;
  } else {
    slider.min = 1; slider.max = Math.max(1, g.scores.length); slider.step = 1;
  }
  const sizeOf = () => (sizes.length ? sizes[Number(slider.value)] : Number(slider.value));
  const status = controls.appendChild(document.createElement("span"));
  status.className = "nv-circuit-status";
  status.dataset.testid = "circuit-status";
  status.setAttribute("aria-live", "polite");

  const scroll = root.appendChild(document.createElement("div"));
  scroll.className = "nv-circuit-scroll";
  const W = model.get("width") + 8, H = model.get("height") + 8;
  const svg = scroll.appendChild(svgEl("svg", { width: W, height: H, viewBox: `-4 -4 ${W} ${H}` }));
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", "circuit graph: components by layer, edges by score");
  const edgeLayer = svg.appendChild(svgEl("g"));
  const nodeLayer = svg.appendChild(svgEl("g"));
  const tip = root.appendChild(document.createElement("div"));
  tip.className = "nv-circuit-tip";
  tip.dataset.testid = "circuit-tip";
  tip.hidden = true;
  const detail = root.appendChild(document.createElement("div"));
  detail.className = "nv-circuit-detail";
  detail.dataset.testid = "circuit-detail";
  const legend = root.appendChild(document.createElement("div"));
  legend.className = "nv-circuit-legend";
  drawLegend(legend, model);

  // nodes, drawn once: focusable, labelled with their score
  const N = g.nodes.length;
  const nodeEls = [];
  for (let n = 0; n < N; n++) {
    const [x, y, w, h] = g.boxes.subarray(4 * n, 4 * n + 4);
    const node = nodeLayer.appendChild(svgEl("g", {}, "nv-node"));
    node.dataset.testid = "circuit-node";
    node.dataset.node = g.nodes[n];
    node.dataset.index = n;
    node.dataset.lmSuppressShortcuts = "true";
    node.setAttribute("tabindex", "0");
    node.setAttribute("role", "button");
    node.setAttribute("aria-label", `${g.nodes[n]}: node score ${fmt3(g.nodeScores[n])}`);
    node.appendChild(svgEl("rect", { x: x - w / 2, y: y - h / 2, width: w, height: h, rx: 3 },
      "nv-node-box"));
    const text = node.appendChild(svgEl("text", { x, y: y + 11 * 0.35, "text-anchor": "middle" },
      "nv-node-label"));
    text.textContent = g.nodes[n];
    nodeEls.push(node);
  }

  function drawEdges() {
    const size = model.get("size");
    const scale = model.get("scale"), stops = model.get("stops");
    const drawn = drawnAt(model, g, size);
    const paths = drawn.map((i) => {
      const s = g.edges[3 * i], r = g.edges[3 * i + 1], port = g.ports[g.edges[3 * i + 2]];
      const x1 = g.boxes[4 * s] + g.boxes[4 * s + 2] / 2, y1 = g.boxes[4 * s + 1];
      const x2 = g.boxes[4 * r] - g.boxes[4 * r + 2] / 2;
      const y2 = g.boxes[4 * r + 1] + PORT_OFFSET[port] * g.boxes[4 * r + 3];
      const mid = (x1 + x2) / 2;
      const score = g.scores[i];
      const width = Number.isFinite(score) ? 0.75 + 3.25 * Math.min(1, Math.abs(score) / scale[2]) : 0.75;
      const p = svgEl("path", {
        d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
        stroke: colour(score, stops, scale), "stroke-width": width,
      }, "nv-edge");
      p.dataset.testid = "circuit-edge";
      p.dataset.edge = i;
      return p;
    });
    edgeLayer.replaceChildren(...paths);
    fade();
    const faith = faithAt(model, size);
    const said = faith === null ? "faithfulness not measured at this size" : `faithfulness ${fmt3(faith)}`;
    const capped = drawn.length < Math.min(size, g.scores.length) ? ` (strongest ${drawn.length} drawn)` : "";
    status.textContent = `${size.toLocaleString("en")} edges · ${said}${capped}`;
    slider.setAttribute("aria-valuetext", `${size} edges, ${said}`);
    const at = sizes.length ? sizes.indexOf(size) : size;
    if (at >= 0 && Number(slider.value) !== at) slider.value = at;
  }

  // with a component selected, the edges that do not touch it fade
  function fade() {
    const n = model.get("selected");
    for (const p of edgeLayer.children) {
      const i = Number(p.dataset.edge);
      p.classList.toggle("nv-faded", n >= 0 && g.edges[3 * i] !== n && g.edges[3 * i + 1] !== n);
    }
  }

  function drawDetail() {
    const n = model.get("selected");
    nodeEls.forEach((e, k) => e.classList.toggle("nv-selected", k === n));
    fade();
    if (n < 0 || n >= N) {
      detail.replaceChildren(el("span", "nv-circuit-hint", "click a component for its layer's node scores"));
      return;
    }
    const layer = g.info[3 * n];
    const same = [];
    for (let k = 0; k < N; k++) if (g.info[3 * k] === layer) same.push(k);
    const top = Math.max(...same.map((k) => g.nodeScores[k]), 1e-12);
    const rows = same.map((k) => {
      const row = el("div", "nv-detail-row" + (k === n ? " nv-current" : ""));
      row.dataset.testid = "circuit-detail-row";
      const bar = el("span", "nv-detail-bar");
      bar.style.width = `${(60 * g.nodeScores[k]) / top}px`;
      row.append(el("span", "nv-detail-name", g.nodes[k]), bar,
        el("span", "nv-detail-value", fmt3(g.nodeScores[k])));
      return row;
    });
    const kind = g.kinds[g.info[3 * n + 1]];
    const where = kind === "embed" ? "the embedding" : kind === "logits" ? "the logits" : `layer ${layer}`;
    detail.replaceChildren(
      el("div", "nv-detail-title", `${g.nodes[n]} · node scores in ${where} (sum of |edge scores| it sends)`),
      ...rows);
  }

  const onInput = () => { model.set("size", sizeOf()); model.save_changes(); };
  const onOver = (ev) => {
    const p = ev.target.closest?.("[data-testid=circuit-edge]");
    if (!p) return;
    const i = Number(p.dataset.edge);
    tip.replaceChildren(el("div", "nv-tip-name", g.edgeName(i)),
      el("div", "nv-tip-value", `score ${signed(g.scores[i])}`));
    const box = root.getBoundingClientRect();
    tip.style.left = `${ev.clientX - box.left + 12}px`;
    tip.style.top = `${ev.clientY - box.top + 12}px`;
    tip.hidden = false;
    p.classList.add("nv-hover");
  };
  const onOut = (ev) => {
    const p = ev.target.closest?.("[data-testid=circuit-edge]");
    if (p) { p.classList.remove("nv-hover"); tip.hidden = true; }
  };
  const choose = (ev) => {
    const node = ev.target.closest?.("[data-testid=circuit-node]");
    if (!node) return;
    if (ev.type === "keydown" && ev.key !== "Enter" && ev.key !== " ") return;
    ev.preventDefault();
    model.set("selected", Number(node.dataset.index));
    model.save_changes();
  };
  slider.addEventListener("input", onInput);
  svg.addEventListener("mouseover", onOver);
  svg.addEventListener("mouseout", onOut);
  svg.addEventListener("click", choose);
  svg.addEventListener("keydown", choose);
  model.on("change:size", drawEdges);
  model.on("change:selected", drawDetail);
  drawEdges();
  drawDetail();
  return () => {
    model.off("change:size", drawEdges);
    model.off("change:selected", drawDetail);
  };
}

// The colour bar: the palette from -max|score| to +max|score|, five ticks, white at 0.
function drawLegend(box, model) {
  const stops = model.get("stops"), [lo, , hi] = model.get("scale");
  const ramp = el("div", "nv-circuit-ramp");
  ramp.style.background = `linear-gradient(to right, ${stops.map((s) => `rgb(${s.join(",")})`).join(", ")})`;
  const ticks = el("div", "nv-circuit-ticks");
  for (let k = 0; k < 5; k++) ticks.append(el("span", "", signed(lo + (k * (hi - lo)) / 4)));
  box.append(el("div", "nv-circuit-caption", "edge score (white = 0); width grows with |score|"),
    ramp, ticks);
}

export default { render };

// Heatmap front end: a title, facets of rows × columns of coloured cells (or bars, for a single
// axis), a colour bar, a hover tooltip, a progress bar with Stop during a live sweep, and a click
// (or Enter) that asks the kernel for that cell's predictions. A toolbar zooms, transposes and
// exports PNG and SVG. Plain ESM with no imports, joined after shared.js when it loads.

const exact = (v) => (Number.isFinite(v) ? Number(v.toPrecision(7)).toString() : "not run yet");
const short = (v) => (Number.isFinite(v) ? Number(v.toPrecision(4)).toString() : "–");
const attr = { layer: "layer", pos: "pos", head: "head" };
const SIZES = [6, 8, 10, 12, 14, 18, 24, 32];
const NO_ANSWER_MS = 15000;
const LEGEND_PX = 360; // the colour bar's width in heatmap.css
const CHAR_PX = 6.5; // about one digit's width at the ticks' 10 px // a click nobody answers (no kernel): say so instead of waiting

function render({ model, el: host }) {
  const root = el("div", "nbvene-heatmap");
  root.dataset.testid = "heatmap";
  const title = el("div", "nv-title", model.get("title") || model.get("metric"));
  title.dataset.testid = "heatmap-title";
  const bar = el("div", "nv-progress");
  bar.dataset.testid = "heatmap-progress";
  const barFill = el("div", "nv-progress-fill");
  const barText = el("span", "nv-progress-text");
  barText.dataset.testid = "heatmap-progress-text";
  const stopButton = el("button", "nv-stop", "Stop");
  stopButton.dataset.testid = "heatmap-stop";
  bar.append(el("div", "nv-progress-track"), barText, stopButton);
  bar.firstChild.appendChild(barFill);
  const tools = el("div", "nv-toolbar");
  const button = (text, testid, label, act) => {
    const b = el("button", "nv-tool", text);
    b.dataset.testid = testid;
    b.title = label;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", act);
    tools.appendChild(b);
    return b;
  };
  const legend = el("div", "nv-legend");
  legend.dataset.testid = "heatmap-legend";
  const scroller = el("div", "nv-scroll");
  const facetsBox = el("div", "nv-facets");
  scroller.appendChild(facetsBox);
  const tip = el("div", "nv-tip");
  tip.dataset.testid = "heatmap-tip";
  tip.hidden = true;
  const detail = el("div", "nv-detail");
  detail.dataset.testid = "heatmap-detail";
  detail.setAttribute("aria-live", "polite");
  root.append(title, bar, tools, legend, scroller, detail, tip);
  host.appendChild(root);

  let cells = []; // [facet][row][col] -> element, in the values' own order
  let shapeKey = "";
  let flip = false; // transposed: the value rows run across
  let mine = null; // the cell this view asked about: {facet, row, col, n}
  let clicks = 0, waiting = null;
  let focused = null; // the one cell with tabindex 0
  const oneAxis = () => model.get("col_axis") === "value";
  const [rowsN, colsN] = [(model.get("row_labels") || []).length, (model.get("col_labels") || []).length];
  const facetsN = (model.get("facets") || [""]).length;
  let size = SIZES.indexOf(facetsN * colsN * rowsN > 3000 || facetsN * colsN > 60 ? 10 : 18);

  const zoomOut = button("−", "heatmap-zoom-out", "smaller cells", () => zoom(-1));
  const zoomIn = button("+", "heatmap-zoom-in", "larger cells", () => zoom(1));
  const transpose = button("⤡", "heatmap-transpose", "transpose (swap rows and columns)", () => {
    flip = !flip;
    shapeKey = "";
    paint();
  });
  transpose.hidden = oneAxis();
  button("PNG", "heatmap-export-png", "export as PNG", () => exportPNG());
  button("SVG", "heatmap-export-svg", "export as SVG", () => download(toSVG(), "image/svg+xml", "svg"));

  function zoom(step) {
    size = Math.min(SIZES.length - 1, Math.max(0, size + step));
    root.style.setProperty("--nv-cell", `${SIZES[size]}px`);
    zoomOut.disabled = size === 0;
    zoomIn.disabled = size === SIZES.length - 1;
  }
  zoom(0);

  function values() {
    const v = model.get("values");
    return v && v.data ? decode(v) : { shape: [0, 0, 0], array: new Float32Array() };
  }

  const stops = () => (isDark(host) ? model.get("stops_dark") : null) || model.get("stops");

  // the words for one coordinate: `layer 3`, `pos 4 "␣Tower"`
  function coordinate(axis, labels, keys, i) {
    return axis === "pos" ? `pos ${keys[i]} ${JSON.stringify(labels[i])}` : `${axis} ${labels[i]}`;
  }

  function build(shape) {
    const [F, R, C] = shape;
    const facets = model.get("facets") || [];
    const rowLabels = model.get("row_labels") || [], colLabels = model.get("col_labels") || [];
    const rowKeys = model.get("row_keys") || [], colKeys = model.get("col_keys") || [];
    const rowAxis = model.get("row_axis"), colAxis = model.get("col_axis");
    const facetAxis = model.get("facet_axis");
    const subject = new Set(model.get("subject") || []);
    const bars = oneAxis();
    const across = flip && !bars;
    // what runs down the side and across, on screen
    const down = across ? { axis: colAxis, labels: colLabels, keys: colKeys, n: C }
      : { axis: rowAxis, labels: rowLabels, keys: rowKeys, n: R };
    const side = across ? { axis: rowAxis, labels: rowLabels, keys: rowKeys, n: R }
      : { axis: colAxis, labels: colLabels, keys: colKeys, n: C };
    cells = Array.from({ length: F }, () => Array.from({ length: R }, () => new Array(C)));
    facetsBox.replaceChildren();
    const label = (axis, labels, keys, i, cls) => {
      const node = el("div", cls);
      if (axis === "pos") {
        node.append(...tokenNodes(labels[i]));
        node.classList.add("nv-token-label");
        if (subject.has(i)) node.classList.add("nv-subject");
        node.title = `position ${keys[i]}: ${JSON.stringify(labels[i])}` +
          (subject.has(i) ? " (subject, corrupted)" : "");
      } else {
        node.textContent = labels[i];
        node.title = `${axis} ${labels[i]}`;
      }
      return node;
    };
    for (let f = 0; f < F; f++) {
      const box = el("div", "nv-facet");
      box.dataset.testid = "heatmap-facet";
      const facetTitle = facetAxis ? `${facetAxis} ${facets[f]}` : "";
      if (facetAxis) box.appendChild(el("div", "nv-facet-title", facetTitle));
      const grid = el("div", bars ? "nv-grid nv-bars" : "nv-grid");
      grid.setAttribute("role", "grid");
      grid.setAttribute("aria-label", [model.get("title"), facetTitle].filter(Boolean).join(" · "));
      grid.style.gridTemplateColumns = bars ? "max-content calc(var(--nv-bar) + 56px)"
        : `max-content repeat(${side.n}, var(--nv-cell))`;
      const head = el("div", "nv-row");
      head.setAttribute("role", "row");
      const corner = el("div", "nv-corner", bars ? `${down.axis} ↓` : `${down.axis} ↓ ${side.axis} →`);
      corner.setAttribute("role", "columnheader");
      head.appendChild(corner);
      if (bars) {
        const h = el("div", "nv-collabel nv-bar-head", model.get("metric"));
        h.setAttribute("role", "columnheader");
        head.appendChild(h);
      } else {
        for (let j = 0; j < side.n; j++) {
          const h = label(side.axis, side.labels, side.keys, j, "nv-collabel");
          if (side.axis === "pos") h.classList.add("nv-vertical");
          h.setAttribute("role", "columnheader");
          head.appendChild(h);
        }
      }
      grid.appendChild(head);
      for (let i = 0; i < down.n; i++) {
        const row = el("div", "nv-row");
        row.setAttribute("role", "row");
        const rl = label(down.axis, down.labels, down.keys, i, "nv-rowlabel");
        rl.dataset.testid = "heatmap-rowlabel";
        rl.setAttribute("role", "rowheader");
        row.appendChild(rl);
        for (let j = 0; j < (bars ? 1 : side.n); j++) {
          const [r, c] = across ? [j, i] : [i, j];
          const cell = el("div", "nv-cell");
          cell.dataset.testid = "heatmap-cell";
          cell.setAttribute("role", "gridcell");
          cell.tabIndex = -1;
          // JupyterLab's command mode would take the arrow keys from a focused cell
          cell.dataset.lmSuppressShortcuts = "true";
          Object.assign(cell.dataset, { facet: f, row: r, col: c });
          if (attr[rowAxis]) cell.dataset[attr[rowAxis]] = rowKeys[r];
          if (attr[colAxis]) cell.dataset[attr[colAxis]] = colKeys[c];
          // the facet's own axis too: data-panel="mlp", data-example="1"
          if (/^[a-z]+$/.test(facetAxis)) cell.setAttribute(`data-${facetAxis}`, facets[f]);
          if (bars) {
            const track = el("span", "nv-track");
            track.appendChild(el("span", "nv-bar"));
            cell.append(track, el("span", "nv-bar-value"));
          }
          row.appendChild(cell);
          cells[f][r][c] = cell;
        }
        grid.appendChild(row);
      }
      box.appendChild(grid);
      facetsBox.appendChild(box);
    }
    const first = cells[0]?.[0]?.[0];
    focused = null;
    if (first) rove(first, false);
  }

  function paint() {
    const { shape, array } = values();
    const key = shape.join("x") + (flip ? "t" : "");
    if (key !== shapeKey) { build(shape); shapeKey = key; }
    const [, R, C] = shape;
    const palette = stops(), scale = model.get("scale");
    const bars = oneAxis();
    const [lo, centre, hi] = scale;
    const at = (v) => ((Math.min(hi, Math.max(lo, v)) - lo) / ((hi - lo) || 1)) * 100;
    cells.forEach((rows, f) => rows.forEach((row, r) => row.forEach((cell, c) => {
      const v = array[(f * R + r) * C + c];
      const fill = colour(v, palette, scale);
      cell.dataset.value = Number.isFinite(v) ? String(v) : "";
      cell.classList.toggle("nv-missing", !Number.isFinite(v));
      if (!bars) { cell.style.background = fill; return; }
      const [a, b] = [at(centre), Number.isFinite(v) ? at(v) : at(centre)].sort((x, y) => x - y);
      Object.assign(cell.firstChild.firstChild.style, { left: `${a}%`,
                                                        width: `${Math.max(b - a, 0.5)}%`,
                                                        background: fill });
      cell.lastChild.textContent = short(v);
    })));
    if (focused) focused.setAttribute("aria-label", ariaLabel(focused));
    drawLegend();
    markSelected();
  }

  // the colour bar: the ramp from lo to hi (only the part of the palette the scale uses),
  // round ticks, the centre marked, and the metric as its title
  function drawLegend() {
    const scale = model.get("scale") || [0, 0, 1], [lo, centre, hi] = scale;
    const palette = stops();
    const legendTitle = el("div", "nv-legend-title", model.get("metric"));
    legendTitle.dataset.testid = "legend-title";
    const ramp = el("div", "nv-ramp");
    const samples = Array.from({ length: 21 }, (_, i) => colour(lo + ((hi - lo) * i) / 20, palette, scale));
    ramp.style.background = `linear-gradient(to right, ${samples.join(", ")})`;
    const pct = (v) => `${(((v - lo) / ((hi - lo) || 1)) * 100).toFixed(2)}%`;
    const mark = el("div", "nv-centre-mark");
    mark.style.left = pct(centre);
    ramp.appendChild(mark);
    const ticks = el("div", "nv-ticks");
    for (const t of model.get("ticks") || []) {
      const tick = el("span", "nv-tick", short(t));
      tick.dataset.testid = "legend-tick";
      tick.dataset.value = String(t);
      tick.style.left = pct(t);
      // the end labels stay inside the bar's width
      const at = (t - lo) / ((hi - lo) || 1);
      if (at < 0.04) tick.style.transform = "none";
      if (at > 0.96) tick.style.transform = "translateX(-100%)";
      ticks.appendChild(tick);
    }
    const say = el("div", "nv-legend-text", `centre: ${model.get("centre_meaning")} · grey = not run`);
    legend.replaceChildren(legendTitle, ramp, ticks, say);
    // a label that would touch the one before it is left out (its tick mark stays); widths
    // estimated from the text, since a figure drawn out of view (Lab's windowed notebook)
    // measures as zero
    const width = legend.clientWidth || LEGEND_PX;
    let right = -Infinity;
    for (const tick of ticks.children) {
      const w = tick.textContent.length * CHAR_PX;
      const at = ((+tick.dataset.value - lo) / ((hi - lo) || 1)) * width;
      const left = at < 0.04 * width ? at : at > 0.96 * width ? at - w : at - w / 2;
      if (left < right + 4) { tick.classList.add("nv-tick-quiet"); continue; }
      right = left + w;
    }
  }

  function drawProgress() {
    const p = model.get("progress") || {};
    const live = p.state === "running" || p.state === "stopping";
    bar.hidden = !(live || p.state === "stopped");
    const share = p.total ? p.done / p.total : 0;
    barFill.style.width = `${Math.round(share * 100)}%`;
    const eta = Number.isFinite(p.eta) ? ` · about ${Math.ceil(p.eta)} s left` : "";
    barText.textContent = p.state === "stopped"
      ? `stopped at ${p.done} of ${p.total} runs: the rest is grey`
      : `${p.done ?? 0} of ${p.total ?? "?"} runs${eta}`;
    stopButton.hidden = !live || !model.get("stoppable");
    if (live && !model.get("stoppable")) barText.textContent += " · interrupt the kernel to stop";
    stopButton.disabled = p.state === "stopping" || model.get("stop");
    if (model.get("stop") && live) barText.textContent += " · stopping…";
  }

  function markSelected() {
    for (const c of root.querySelectorAll(".nv-cell.nv-selected")) {
      c.classList.remove("nv-selected");
      c.removeAttribute("aria-selected");
    }
    const cell = mine && cells[mine.facet]?.[mine.row]?.[mine.col];
    if (cell) { cell.classList.add("nv-selected"); cell.setAttribute("aria-selected", "true"); }
  }

  function describe(cell) {
    const f = +cell.dataset.facet, r = +cell.dataset.row, c = +cell.dataset.col;
    const { shape, array } = values();
    const v = array[(f * shape[1] + r) * shape[2] + c];
    const rowAxis = model.get("row_axis"), colAxis = model.get("col_axis");
    const facetAxis = model.get("facet_axis");
    const parts = [];
    if (facetAxis) parts.push(`${facetAxis} ${model.get("facets")[f]}`);
    parts.push(coordinate(rowAxis, model.get("row_labels"), model.get("row_keys"), r));
    if (colAxis !== "value") {
      parts.push(coordinate(colAxis, model.get("col_labels"), model.get("col_keys"), c));
    }
    const meanings = model.get("meanings") || [];
    return { where: parts.join(" · "), value: v, meaning: meanings[f] || model.get("meaning") };
  }

  const ariaLabel = (cell) => {
    const { where, value } = describe(cell);
    return `${where}: ${model.get("metric")} = ${exact(value)}`;
  };

  function showTip(cell) {
    const { where, value, meaning } = describe(cell);
    const head = el("div", "nv-tip-where", where);
    const val = el("div", "nv-tip-value", `${model.get("metric")} = ${exact(value)}`);
    val.dataset.testid = "heatmap-tip-value";
    const means = el("div", "nv-tip-meaning", meaning);
    means.dataset.testid = "heatmap-tip-meaning";
    tip.replaceChildren(head, val, means);
    tip.hidden = false;
    // fixed to the window, so no scrolling or clipping output area can cut it; where an
    // ancestor makes its own frame for fixed elements (a transform, `contain`), measure it
    tip.style.left = "0px";
    tip.style.top = "0px";
    const origin = tip.getBoundingClientRect();
    const at = cell.getBoundingClientRect();
    const width = window.innerWidth, height = window.innerHeight;
    let left = at.right + 6;
    if (left + origin.width > width - 4) left = Math.max(4, at.left - origin.width - 6);
    const top = Math.min(Math.max(4, at.top), Math.max(4, height - origin.height - 4));
    tip.style.left = `${left - origin.left}px`;
    tip.style.top = `${top - origin.top}px`;
  }

  function onHover(ev) {
    const cell = ev.target.closest?.(".nv-cell");
    if (!cell) { tip.hidden = true; return; }
    showTip(cell);
  }

  function select(cell) {
    if (!cell || cell.classList.contains("nv-missing")) return;
    if ((model.get("progress") || {}).state === "running") return; // the model is busy
    clicks += 1;
    mine = { facet: +cell.dataset.facet, row: +cell.dataset.row, col: +cell.dataset.col, n: clicks };
    markSelected();
    model.set("selected", mine);
    model.save_changes();
    detail.replaceChildren(el("div", "nv-detail-status", "computing…"));
    clearTimeout(waiting);
    const asked = clicks;
    waiting = setTimeout(() => {
      if (mine && mine.n === asked && detail.textContent === "computing…") {
        detail.replaceChildren(el("div", "nv-detail-status nv-error",
          "no answer from the kernel: run the cell again to click its cells"));
      }
    }, NO_ANSWER_MS);
  }

  // roving tabindex: one cell of the figure is in the tab order, arrows move it
  function rove(cell, focus = true) {
    if (focused && focused !== cell) { focused.tabIndex = -1; focused.removeAttribute("aria-label"); }
    focused = cell;
    cell.tabIndex = 0;
    cell.setAttribute("aria-label", ariaLabel(cell));
    if (focus) { cell.focus(); showTip(cell); }
  }

  function onKey(ev) {
    const cell = ev.target.closest?.(".nv-cell");
    if (!cell) return;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(cell); return; }
    const move = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[ev.key];
    if (!move) return;
    ev.preventDefault();
    const f = +cell.dataset.facet, R = cells[f].length, C = cells[f][0].length;
    let [dr, dc] = move;
    if (flip && !oneAxis()) [dr, dc] = [dc, dr];
    const r = Math.min(R - 1, Math.max(0, +cell.dataset.row + dr));
    const c = Math.min(C - 1, Math.max(0, +cell.dataset.col + dc));
    rove(cells[f][r][c]);
  }

  function onStop() {
    model.set("stop", true);
    model.save_changes();
    drawProgress();
  }

  function drawDetail() {
    const d = model.get("detail") || {};
    const s = mine || {};
    if (!d.cell || d.cell.facet !== s.facet || d.cell.row !== s.row || d.cell.col !== s.col) return;
    if (d.cell.n !== undefined && d.cell.n !== s.n) return; // the answer to an older click
    if (d.status === "computing") {
      detail.replaceChildren(el("div", "nv-detail-status", "computing…"));
      return;
    }
    clearTimeout(waiting);
    if (d.status === "error") {
      detail.replaceChildren(el("div", "nv-detail-status nv-error", d.error));
      return;
    }
    const cell = cells[s.facet]?.[s.row]?.[s.col];
    const head = el("div", "nv-detail-title", cell ? describe(cell).where : "");
    const cols = el("div", "nv-detail-cols");
    for (const [key, name] of [["patched", "this cell"], ["clean", "clean run"],
                               ["corrupted", "corrupted run"]]) {
      const run = d[key];
      if (!run) continue;
      const col = el("div", "nv-detail-col");
      col.dataset.testid = `detail-${key}`;
      col.appendChild(el("div", "nv-detail-name", name));
      const raw = Number.isFinite(run.raw) ? ` (raw ${exact(run.raw)})` : "";
      const m = el("div", "nv-detail-metric", `${model.get("metric")} = ${exact(run.metric)}${raw}`);
      m.dataset.testid = `detail-${key}-metric`;
      col.appendChild(m);
      const list = el("ol", "nv-top");
      for (const t of run.top || []) {
        const item = el("li");
        item.dataset.testid = `detail-${key}-token`;
        const tok = el("span", "nv-tok");
        tok.append(...tokenNodes(t.token));
        item.append(tok, el("span", "nv-p", ` ${(100 * t.p).toFixed(1)}%`));
        list.appendChild(item);
      }
      col.appendChild(list);
      cols.appendChild(col);
    }
    detail.replaceChildren(head, cols);
  }

  // --- export: the figure as drawn (theme, zoom, transpose), as SVG and as PNG ---------------

  function toSVG() {
    const style = getComputedStyle(root);
    const ink = style.color, paper = getComputedStyle(scroller).backgroundColor;
    const esc = (t) => String(t).replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
    const scale = model.get("scale"), palette = stops();
    const [lo, , hi] = scale;
    const out = [];
    let width = 0, y = 20;
    out.push(`<text x="8" y="${y}" font-weight="bold">${esc(model.get("title") || model.get("metric"))}</text>`);
    y += 16;
    for (const grid of facetsBox.querySelectorAll(".nv-facet")) {
      const origin = grid.getBoundingClientRect();
      const top = y;
      for (const node of grid.querySelectorAll(".nv-facet-title, .nv-corner, .nv-collabel, .nv-rowlabel, .nv-cell, .nv-bar")) {
        const b = node.getBoundingClientRect();
        const x = b.left - origin.left + 8, yy = b.top - origin.top + top;
        width = Math.max(width, x + b.width + 8);
        y = Math.max(y, yy + b.height);
        if (node.classList.contains("nv-cell")) {
          if (!oneAxis()) {
            out.push(`<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${b.width.toFixed(1)}" height="${b.height.toFixed(1)}" fill="${node.style.background}"/>`);
          }
        } else if (node.classList.contains("nv-bar")) {
          out.push(`<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${b.width.toFixed(1)}" height="${b.height.toFixed(1)}" fill="${node.style.background}"/>`);
        } else {
          const font = getComputedStyle(node).fontSize;
          const anchor = node.classList.contains("nv-rowlabel") ? ` text-anchor="end"` : "";
          const tx = anchor ? x + b.width - 4 : x;
          out.push(`<text x="${tx.toFixed(1)}" y="${(yy + b.height - 3).toFixed(1)}" font-size="${font}"${anchor} xml:space="preserve">${esc(node.textContent)}</text>`);
        }
      }
      y += 12;
    }
    // the colour bar
    const stopsSVG = Array.from({ length: 21 }, (_, i) =>
      `<stop offset="${i / 20}" stop-color="${colour(lo + ((hi - lo) * i) / 20, palette, scale)}"/>`).join("");
    out.push(`<defs><linearGradient id="nv-ramp">${stopsSVG}</linearGradient></defs>`);
    out.push(`<text x="8" y="${y + 12}">${esc(model.get("metric"))}</text>`);
    out.push(`<rect x="8" y="${y + 18}" width="240" height="10" fill="url(#nv-ramp)"/>`);
    for (const t of model.get("ticks") || []) {
      const x = 8 + (240 * (t - lo)) / ((hi - lo) || 1);
      out.push(`<text x="${x.toFixed(1)}" y="${y + 40}" text-anchor="middle" font-size="10">${esc(short(t))}</text>`);
    }
    y += 48;
    width = Math.max(width, 300);
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${Math.ceil(width)}" height="${Math.ceil(y)}" ` +
      `font-family="sans-serif" font-size="12" fill="${ink}"><rect width="100%" height="100%" fill="${paper}"/>` +
      `${out.join("")}</svg>`;
  }

  function download(data, type, ext) {
    const blob = data instanceof Blob ? data : new Blob([data], { type });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `nbvene-${(model.get("metric") || "figure").replace(/[^\w.-]+/g, "_")}.${ext}`;
    a.dataset.testid = "heatmap-download";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  function exportPNG() {
    const svg = toSVG();
    const img = new Image();
    img.onload = () => {
      const canvas = document.createElement("canvas");
      const ratio = window.devicePixelRatio || 1;
      canvas.width = img.width * ratio;
      canvas.height = img.height * ratio;
      const ctx = canvas.getContext("2d");
      ctx.scale(ratio, ratio);
      ctx.drawImage(img, 0, 0);
      canvas.toBlob((blob) => download(blob, "image/png", "png"), "image/png");
    };
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  }

  root.addEventListener("mouseover", onHover);
  root.addEventListener("mouseleave", () => { tip.hidden = true; });
  root.addEventListener("click", (ev) => {
    const cell = ev.target.closest?.(".nv-cell");
    if (cell) { rove(cell, false); select(cell); }
  });
  root.addEventListener("keydown", onKey);
  root.addEventListener("focusout", (ev) => { if (!root.contains(ev.relatedTarget)) tip.hidden = true; });
  stopButton.addEventListener("click", onStop);
  // the theme can change under a live figure: repaint with the other palette
  const theme = new MutationObserver(paint);
  theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  const on = [["change:values", paint], ["change:scale", paint], ["change:progress", drawProgress],
              ["change:stop", drawProgress], ["change:detail", drawDetail],
              ["change:centre_meaning", drawLegend], ["change:ticks", drawLegend]];
  on.forEach(([n, f]) => model.on(n, f));
  paint();
  drawProgress();
  return () => { on.forEach(([n, f]) => model.off(n, f)); theme.disconnect(); clearTimeout(waiting); };
}

export default { render };

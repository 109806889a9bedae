// Heatmap front end: facets of rows × columns of coloured cells, a legend, a hover tooltip,
// a progress bar with Stop during a live sweep, and a click that asks the kernel for that
// cell's predictions. Plain ESM with no imports, joined after shared.js when it loads.

const fmt = (v) => (Number.isFinite(v) ? Number(v.toPrecision(4)).toString() : "not run");
const exact = (v) => (Number.isFinite(v) ? Number(v.toPrecision(7)).toString() : "not run yet");
const attr = { layer: "layer", pos: "pos", head: "head" };

function render({ model, el: host }) {
  const root = el("div", "nbvene-heatmap");
  root.dataset.testid = "heatmap";
  const bar = el("div", "nv-progress");
  bar.dataset.testid = "heatmap-progress";
  const barFill = el("div", "nv-progress-fill");
  const barText = el("span", "nv-progress-text");
  barText.dataset.testid = "heatmap-progress-text";
  const stopButton = el("button", "nv-stop", "Stop");
  stopButton.dataset.testid = "heatmap-stop";
  bar.append(el("div", "nv-progress-track"), barText, stopButton);
  bar.firstChild.appendChild(barFill);
  const facetsBox = el("div", "nv-facets");
  const legend = el("div", "nv-legend");
  legend.dataset.testid = "heatmap-legend";
  const tip = el("div", "nv-tip");
  tip.dataset.testid = "heatmap-tip";
  tip.hidden = true;
  const detail = el("div", "nv-detail");
  detail.dataset.testid = "heatmap-detail";
  root.append(bar, facetsBox, legend, detail, tip);
  host.appendChild(root);

  let cells = []; // [facet][row][col] -> element
  let shapeKey = "";

  function values() {
    const v = model.get("values");
    return v && v.data ? decode(v) : { shape: [0, 0, 0], array: new Float32Array() };
  }

  function build(shape) {
    const [F, R, C] = shape;
    const facets = model.get("facets") || [];
    const rowLabels = model.get("row_labels") || [], colLabels = model.get("col_labels") || [];
    const rowKeys = model.get("row_keys") || [], colKeys = model.get("col_keys") || [];
    const rowAxis = model.get("row_axis"), colAxis = model.get("col_axis");
    const facetAxis = model.get("facet_axis");
    cells = [];
    facetsBox.replaceChildren();
    for (let f = 0; f < F; f++) {
      const box = el("div", "nv-facet");
      box.dataset.testid = "heatmap-facet";
      if (facetAxis) box.appendChild(el("div", "nv-facet-title", `${facetAxis} ${facets[f]}`));
      const grid = el("div", "nv-grid");
      grid.style.gridTemplateColumns = `max-content repeat(${C}, var(--nv-cell))`;
      grid.appendChild(el("div", "nv-corner", `${rowAxis} \\ ${colAxis}`));
      for (let c = 0; c < C; c++) {
        const h = el("div", "nv-collabel", colLabels[c]);
        h.title = `${colAxis} ${colLabels[c]}`;
        grid.appendChild(h);
      }
      const rows = [];
      for (let r = 0; r < R; r++) {
        const label = el("div", "nv-rowlabel");
        label.dataset.testid = "heatmap-rowlabel";
        if (rowAxis === "pos") {
          label.append(...tokenNodes(rowLabels[r]));
          label.title = `position ${rowKeys[r]}: ${JSON.stringify(rowLabels[r])}`;
        } else {
          label.textContent = rowLabels[r];
          label.title = `${rowAxis} ${rowLabels[r]}`;
        }
        grid.appendChild(label);
        const row = [];
        for (let c = 0; c < C; c++) {
          const cell = el("div", "nv-cell");
          cell.dataset.testid = "heatmap-cell";
          Object.assign(cell.dataset, { facet: f, row: r, col: c });
          if (attr[rowAxis]) cell.dataset[attr[rowAxis]] = rowKeys[r];
          if (attr[colAxis]) cell.dataset[attr[colAxis]] = colKeys[c];
          // the facet's own axis too: data-panel="mlp", data-example="1"
          if (/^[a-z]+$/.test(facetAxis)) cell.setAttribute(`data-${facetAxis}`, facets[f]);
          grid.appendChild(cell);
          row.push(cell);
        }
        rows.push(row);
      }
      cells.push(rows);
      box.appendChild(grid);
      facetsBox.appendChild(box);
    }
  }

  function paint() {
    const { shape, array } = values();
    const key = shape.join("x");
    if (key !== shapeKey) { build(shape); shapeKey = key; }
    const [, R, C] = shape;
    const stops = model.get("stops"), scale = model.get("scale");
    cells.forEach((rows, f) => rows.forEach((row, r) => row.forEach((cell, c) => {
      const v = array[(f * R + r) * C + c];
      cell.style.background = colour(v, stops, scale);
      cell.dataset.value = Number.isFinite(v) ? String(v) : "";
      cell.classList.toggle("nv-missing", !Number.isFinite(v));
    })));
    drawLegend();
    markSelected();
  }

  function drawLegend() {
    const stops = model.get("stops") || [], [lo, centre, hi] = model.get("scale") || [0, 0, 0];
    const ramp = el("div", "nv-ramp");
    ramp.style.background = `linear-gradient(to right, ${stops
      .map((s) => `rgb(${s.join(",")})`).join(", ")})`;
    const ticks = el("div", "nv-ticks");
    [lo, centre, hi].forEach((v, i) => {
      const t = el("span", "", fmt(v));
      t.dataset.testid = ["legend-lo", "legend-centre", "legend-hi"][i];
      ticks.appendChild(t);
    });
    const say = el("div", "nv-legend-text", `${model.get("metric")} · centre: ${model.get("centre_meaning")}`);
    const missing = el("span", "nv-legend-missing", "grey = not run");
    legend.replaceChildren(ramp, ticks, say, missing);
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
    const s = model.get("selected") || {};
    for (const c of root.querySelectorAll(".nv-cell.nv-selected")) c.classList.remove("nv-selected");
    cells[s.facet]?.[s.row]?.[s.col]?.classList.add("nv-selected");
  }

  function describe(cell) {
    const f = +cell.dataset.facet, r = +cell.dataset.row, c = +cell.dataset.col;
    const { shape, array } = values();
    const v = array[(f * shape[1] + r) * shape[2] + c];
    const rowAxis = model.get("row_axis"), colAxis = model.get("col_axis");
    const facetAxis = model.get("facet_axis");
    const rowLabel = model.get("row_labels")[r], colLabel = model.get("col_labels")[c];
    const parts = [];
    if (facetAxis) parts.push(`${facetAxis} ${model.get("facets")[f]}`);
    const name = (axis, label, keyList, i) => axis === "pos"
      ? `pos ${keyList[i]} ${JSON.stringify(label)}` : `${axis} ${label}`;
    parts.push(name(rowAxis, rowLabel, model.get("row_keys"), r));
    if (colAxis !== "value") parts.push(name(colAxis, colLabel, model.get("col_keys"), c));
    return { where: parts.join(" · "), value: v };
  }

  function onHover(ev) {
    const cell = ev.target.closest?.(".nv-cell");
    if (!cell) { tip.hidden = true; return; }
    const { where, value } = describe(cell);
    const head = el("div", "nv-tip-where", where);
    const val = el("div", "nv-tip-value", `${model.get("metric")} = ${exact(value)}`);
    val.dataset.testid = "heatmap-tip-value";
    tip.replaceChildren(head, val, el("div", "nv-tip-meaning", model.get("meaning")));
    tip.hidden = false;
    const box = root.getBoundingClientRect(), at = cell.getBoundingClientRect();
    tip.style.left = `${at.right - box.left + 6}px`;
    tip.style.top = `${at.top - box.top}px`;
  }

  function onClick(ev) {
    const cell = ev.target.closest?.(".nv-cell");
    if (!cell || cell.classList.contains("nv-missing")) return;
    if ((model.get("progress") || {}).state === "running") return; // the model is busy
    model.set("selected", { facet: +cell.dataset.facet, row: +cell.dataset.row,
                            col: +cell.dataset.col });
    model.save_changes();
    detail.replaceChildren(el("div", "nv-detail-status", "computing…"));
  }

  function onStop() {
    model.set("stop", true);
    model.save_changes();
    drawProgress();
  }

  function drawDetail() {
    const d = model.get("detail") || {};
    const s = model.get("selected") || {};
    if (!d.cell || d.cell.facet !== s.facet || d.cell.row !== s.row || d.cell.col !== s.col) return;
    if (d.status === "computing") {
      detail.replaceChildren(el("div", "nv-detail-status", "computing…"));
      return;
    }
    if (d.status === "error") {
      detail.replaceChildren(el("div", "nv-detail-status nv-error", d.error));
      return;
    }
    const cell = cells[s.facet]?.[s.row]?.[s.col];
    const title = el("div", "nv-detail-title", cell ? describe(cell).where : "");
    const cols = el("div", "nv-detail-cols");
    for (const [key, name] of [["patched", "this cell"], ["clean", "clean run"],
                               ["corrupted", "corrupted run"]]) {
      const run = d[key];
      if (!run) continue;
      const col = el("div", "nv-detail-col");
      col.dataset.testid = `detail-${key}`;
      col.appendChild(el("div", "nv-detail-name", name));
      const m = el("div", "nv-detail-metric", `${model.get("metric")} = ${exact(run.metric)}`);
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
    detail.replaceChildren(title, cols);
  }

  root.addEventListener("mouseover", onHover);
  root.addEventListener("mouseleave", () => { tip.hidden = true; });
  root.addEventListener("click", onClick);
  stopButton.addEventListener("click", onStop);
  const on = [["change:values", paint], ["change:scale", paint], ["change:progress", drawProgress],
              ["change:stop", drawProgress], ["change:selected", markSelected],
              ["change:detail", drawDetail], ["change:centre_meaning", drawLegend]];
  on.forEach(([n, f]) => model.on(n, f));
  paint();
  drawProgress();
  drawDetail();
  return () => on.forEach(([n, f]) => model.off(n, f));
}

export default { render };

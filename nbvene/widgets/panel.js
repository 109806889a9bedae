// Steering panel front end: sliders -> debounced requests {id, values}; answers shown only if
// they answer the newest request sent. Plain ESM with no imports, joined after shared.js when
// it loads.
const DEBOUNCE_MS = 150;

// Generated text reads as prose: its spaces stay spaces. Only a token that is nothing but
// whitespace gets visible signs (tokenNodes), as it would otherwise not show at all.
function proseNodes(text) {
  return String(text).trim() === "" ? tokenNodes(text) : [document.createTextNode(text)];
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbvene-panel";
  root.dataset.testid = "panel";
  const heading = document.createElement("h4");
  const sliders = document.createElement("div");
  const status = document.createElement("div");
  status.className = "nv-status";
  status.dataset.testid = "panel-status";
  const columns = document.createElement("div");
  columns.className = "nv-columns";
  columns.dataset.testid = "panel-columns";
  const note = document.createElement("div");
  note.className = "nv-status";
  note.dataset.testid = "panel-note";
  root.append(heading, sliders, status, columns, note);
  el.appendChild(root);

  let sent = Number(model.get("request")?.id || 0); // the newest id this view sent
  let inFlight = false; // a request is waiting for its answer: hold the next one back
  let pending = null;   // the newest values not sent yet
  let timer = null;
  const inputs = [];

  function current() { return inputs.map((i) => Number(i.value)); }

  function send(values) {
    sent = Math.max(sent, Number(model.get("request")?.id || 0)) + 1;
    inFlight = true;
    model.set("values", values);
    model.set("request", { id: sent, values });
    model.save_changes();
    status.className = "nv-status";
    status.textContent = "computing…";
  }

  function schedule() {
    pending = current();
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!inFlight && pending) { send(pending); pending = null; }
    }, DEBOUNCE_MS);
  }

  function buildSliders() {
    sliders.replaceChildren();
    inputs.length = 0;
    (model.get("sliders") || []).forEach((s, i) => {
      const row = document.createElement("label");
      row.className = "nv-slider";
      const label = document.createElement("span");
      label.className = "nv-label";
      label.textContent = s.label;
      const input = document.createElement("input");
      input.type = "range";
      input.min = s.min; input.max = s.max; input.step = s.step;
      input.value = (model.get("values") || [])[i] ?? s.value;
      input.dataset.testid = `panel-slider-${i}`;
      input.setAttribute("aria-label", s.label);
      // JupyterLab (lumino) binds ArrowLeft/Right in command mode at document level; the
      // attribute must sit on the focused element itself for the arrows to reach the slider.
      input.dataset.lmSuppressShortcuts = "true";
      const shown = document.createElement("output");
      shown.dataset.testid = `panel-value-${i}`;
      shown.textContent = input.value;
      input.addEventListener("input", () => { shown.textContent = input.value; schedule(); });
      row.append(label, input, shown);
      sliders.appendChild(row);
      inputs.push(input);
    });
  }

  function showAnswer() {
    const answer = model.get("answer") || {};
    if (answer.id === undefined) return;
    if (answer.id >= sent) inFlight = false;
    if (answer.id === sent) draw(answer); // an older answer is stale: a newer request is out
    if (!inFlight && pending && timer === null) { send(pending); pending = null; }
  }

  function draw(answer) {
    if (answer.error) {
      status.className = "nv-status nv-error";
      status.textContent = `error: ${answer.error}`;
      return;
    }
    status.className = "nv-status";
    status.textContent = "";
    columns.replaceChildren(...(answer.columns || []).map((c) => {
      const col = document.createElement("div");
      col.className = "nv-column";
      col.dataset.testid = "panel-column";
      const h = document.createElement("h5");
      h.textContent = c.title ?? "";
      col.appendChild(h);
      for (const t of c.tokens || []) {
        const tok = document.createElement("span");
        tok.className = t.mark ? "nv-tok nv-mark" : "nv-tok";
        tok.dataset.testid = "panel-token";
        tok.append(...proseNodes(t.text));
        col.appendChild(tok);
      }
      return col;
    }));
    note.textContent = answer.note ?? "";
  }

  function showValues() {
    const values = model.get("values") || [];
    inputs.forEach((input, i) => {
      if (values[i] !== undefined && document.activeElement !== input) {
        input.value = values[i];
        input.nextSibling.textContent = input.value;
      }
    });
  }

  heading.textContent = model.get("title") || "";
  heading.hidden = !model.get("title");
  buildSliders();
  showAnswer();
  const on = [["change:answer", showAnswer], ["change:values", showValues],
              ["change:sliders", buildSliders]];
  on.forEach(([n, f]) => model.on(n, f));
  return () => { clearTimeout(timer); on.forEach(([n, f]) => model.off(n, f)); };
}

export default { render };

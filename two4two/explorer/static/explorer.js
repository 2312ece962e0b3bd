// The explorer page: every number comes from the server's JSON, every image from its PNGs.
"use strict";

(function () {
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const state = { index: null, method: null, curves: null, request: 0 };

  async function getJSON(url) {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function showError(err) {
    const box = $("error");
    box.textContent = err ? String(err.message || err) : "";
    box.hidden = !err;
  }

  const pct = (p) => (100 * p).toFixed(1) + " %";
  const GRID_MAX = 240; // thumbnails on the first page; the filters narrow a larger split

  function thumbnail(item) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.testid = "thumb";
    button.dataset.index = item.index;
    button.className = item.correct ? "thumb" : "thumb wrong";
    button.title = `${item.id}: a ${item.label}, predicted ${item.predicted}`;
    const img = document.createElement("img");
    img.src = `/image/${item.index}.png`;
    img.alt = item.id;
    img.loading = "lazy";
    const caption = document.createElement("span");
    caption.textContent = `${item.label} · z = ${item.logit.toFixed(2)}`;
    button.append(img, caption);
    button.addEventListener("click", () => select(item.index));
    return button;
  }

  function showGrid() {
    state.index = null;
    $("selected").hidden = true;
    $("grid-view").hidden = false;
    document.querySelectorAll('[data-testid="image-item"]').forEach((b) => b.classList.remove("active"));
  }

  async function loadList() {
    const form = new FormData(document.getElementById("filters"));
    const query = new URLSearchParams();
    for (const [key, value] of form.entries()) if (value !== "" && value !== "any") query.set(key, value);
    try {
      const { images } = await getJSON("/api/images?" + query.toString());
      showError(null);
      const list = $("image-list");
      list.replaceChildren();
      for (const item of images) {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.testid = "image-item";
        button.dataset.index = item.index;
        button.textContent = `${item.id} · ${item.label} · z = ${item.logit.toFixed(2)}`;
        if (!item.correct) button.classList.add("wrong");
        button.addEventListener("click", () => select(item.index));
        li.append(button);
        list.append(li);
      }
      $("count").textContent = `${images.length} images`;
      $("grid").replaceChildren(...images.slice(0, GRID_MAX).map(thumbnail));
      $("grid-note").textContent = images.length > GRID_MAX
        ? `${images.length} images; the first ${GRID_MAX} shown (the filters narrow the rest). Red: predicted wrong.`
        : `${images.length} images (red: predicted wrong). Choose one to see its maps, curves and ground truth.`;
    } catch (err) {
      showError(err);
    }
  }

  function figure(url, lines, flips) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = url;
    img.alt = lines[0];
    const cap = document.createElement("figcaption");
    lines.forEach((line, k) => {
      const span = document.createElement("div");
      span.textContent = line;
      if (k === lines.length - 1 && flips) span.classList.add("flip");
      cap.append(span);
    });
    fig.append(img, cap);
    return fig;
  }

  async function select(index) {
    try {
      const d = await getJSON(`/api/image/${index}`);
      showError(null);
      state.index = index;
      document.querySelectorAll('[data-testid="image-item"]').forEach((b) => b.classList.toggle("active", Number(b.dataset.index) === index));
      $("selected").hidden = false;
      $("grid-view").hidden = true;
      $("title").textContent = `${d.id}: a ${d.label}, predicted ${d.predicted} (z = ${d.logit.toFixed(3)})`;
      $("probability").textContent = `probability of the true class (${d.label}): ${pct(d.probability_true_class)}; maps explain ${d.explained_class}`;
      $("probability").dataset.value = d.probability_true_class;
      $("image").src = `/image/${index}.png`;
      $("mask").src = `/mask/${index}.png`;
      const truth = $("interventions");
      truth.replaceChildren(...d.interventions.map((t) => figure(t.url, [t.label, `${t.before} → ${t.after}`, `Δz = ${t.delta_logit >= 0 ? "+" : ""}${t.delta_logit.toFixed(2)}${t.flips ? " (flips)" : ""}`], t.flips)));
      if (!d.interventions.length) truth.textContent = "no intervention splits in this dataset";
      const removals = $("removals");
      removals.replaceChildren(...d.removals.map((t) => figure(t.url, [t.label, `Δz = ${t.delta_logit >= 0 ? "+" : ""}${t.delta_logit.toFixed(2)}${t.flips ? " (flips)" : ""}`], t.flips)));
      if (!d.removals.length) removals.textContent = "no part-removal splits in this dataset";
      await showMethod();
    } catch (err) {
      showError(err);
    }
  }

  async function showMethod() {
    if (state.index === null) return;
    state.method = $("method").value;
    $("map").src = `/map/${state.method}/${state.index}.png`;
    try {
      state.curves = await getJSON(`/api/curves/${state.method}/${state.index}`);
      drawCurves();
      await moveSlider();
    } catch (err) {
      showError(err);
    }
  }

  function drawCurves() {
    const svg = $("curves");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const x = (p) => 30 + (p / 100) * 280;
    const y = (v) => 200 - v * 180;
    const line = (x1, y1, x2, y2, cls) => {
      const l = document.createElementNS(ns, "line");
      Object.entries({ x1, y1, x2, y2 }).forEach(([k, v]) => l.setAttribute(k, v));
      l.setAttribute("stroke", cls || "#999");
      svg.append(l);
      return l;
    };
    line(30, 200, 310, 200);
    line(30, 20, 30, 200);
    for (const v of [0, 0.5, 1]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", 2);
      t.setAttribute("y", y(v) + 4);
      t.setAttribute("font-size", "10");
      t.textContent = v.toFixed(1);
      svg.append(t);
    }
    for (const p of [0, 50, 100]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x(p) - 8);
      t.setAttribute("y", 214);
      t.setAttribute("font-size", "10");
      t.textContent = `${p} %`;
      svg.append(t);
    }
    for (const [order, colour] of [["morf", "#c0392b"], ["lerf", "#1f5fa8"]]) {
      const poly = document.createElementNS(ns, "polyline");
      poly.setAttribute("points", state.curves.percentages.map((p, k) => `${x(p)},${y(state.curves[order][k])}`).join(" "));
      poly.setAttribute("fill", "none");
      poly.setAttribute("stroke", colour);
      poly.setAttribute("stroke-width", "2");
      poly.dataset.testid = `curve-${order}`;
      svg.append(poly);
    }
    state.marker = line(x(0), 20, x(0), 200, "#444");
    state.marker.setAttribute("stroke-dasharray", "3 3");
  }

  async function moveSlider() {
    if (state.index === null) return;
    const p = Number($("slider").value);
    $("percent").textContent = `${p} %`;
    if (state.marker) {
      const xp = 30 + (p / 100) * 280;
      state.marker.setAttribute("x1", xp);
      state.marker.setAttribute("x2", xp);
    }
    const ticket = ++state.request;
    try {
      const r = await getJSON(`/api/perturbed/${state.method}/${state.index}?p=${p}`);
      if (ticket !== state.request) return; // a later move already answered
      $("morf-image").src = r.morf.url;
      $("lerf-image").src = r.lerf.url;
      $("morf-probability").textContent = pct(r.morf.probability);
      $("lerf-probability").textContent = pct(r.lerf.probability);
      $("morf-probability").dataset.value = r.morf.probability;
      $("lerf-probability").dataset.value = r.lerf.probability;
      $("slider").dataset.shown = p;
    } catch (err) {
      showError(err);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      loadList();
    });
    $("method").addEventListener("change", showMethod);
    $("back").addEventListener("click", showGrid);
    $("opacity").addEventListener("input", () => {
      $("map").style.opacity = Number($("opacity").value) / 100;
    });
    $("map").style.opacity = 0.7;
    $("slider").addEventListener("input", moveSlider);
    loadList();
  });
})();

// Lamina's trace view: the Chrome trace-event JSON embedded in this page
// drawn on one canvas. One row per task (main first) with its polls as
// boxes and the spans inside them, the fixed rows (timers, devices, network,
// idle), red arrows for wake-ups from the slice that woke a task to its
// next poll, and under them each TCP connection's counters as step lines on
// the same time axis. Zoom with the wheel or the buttons, pan by dragging.
// Plain JS with no libraries: the page works offline. Everything is drawn
// on a canvas (not one DOM node per event) so that 100k events stay fast.
"use strict";
(function () {
  const COLOURS = {
    poll: "#3b7dd8",
    idle: "#c8c8c8",
    request: "#e8a33d",
    span: "#8e5cc2",
    source: "#2a9d5c",
    arrow: "#d62828",
    rx: "#2a9d5c",
    tx: "#7a3fb0",
    instant: "#404040",
  };
  const SERIES_COLOURS = {
    sent: "#1f77b4",
    acked: "#2ca02c",
    "in flight": "#ff7f0e",
    buffered: "#9467bd",
    "peer window": "#8c564b",
    retransmits: "#e0218a",
  };
  const SPARE_COLOURS = ["#17becf", "#bcbd22", "#7f7f7f", "#393b79"];
  const LABEL_W = 280, AXIS_H = 26, ROW_H = 24, CHART_H = 90, CHART_GAP = 16;

  const started = performance.now();
  const data = JSON.parse(document.getElementById("trace-data").textContent);
  const events = data.traceEvents || [];

  // ---- The model: rows of slices and instants, arrows, counter series.
  const rows = new Map(); // tid -> row
  function row(tid) {
    let r = rows.get(tid);
    if (!r) {
      r = { tid: tid, name: "thread " + tid, sort: tid, slices: [], instants: [], stack: [], named: false };
      rows.set(tid, r);
    }
    return r;
  }
  const flowStarts = new Map(); // id -> {tid, ts}
  const flowEnds = [];
  const series = new Map(); // "name#id" -> {name, fields: Map(field -> [[ts, v]])}
  let tMin = Infinity, tMax = -Infinity, requests = 0;
  function seen(ts) {
    if (ts < tMin) tMin = ts;
    if (ts > tMax) tMax = ts;
  }
  for (const e of events) {
    const ts = +e.ts || 0;
    switch (e.ph) {
      case "M":
        if (e.name === "thread_name") {
          const r = row(e.tid);
          r.name = e.args.name;
          r.named = true;
        } else if (e.name === "thread_sort_index") {
          row(e.tid).sort = e.args.sort_index;
        }
        break;
      case "B": {
        seen(ts);
        const r = row(e.tid);
        const s = { start: ts, end: ts, name: e.name, depth: r.stack.length,
                    detail: e.args && e.args.detail, result: undefined };
        if (e.name === "http request") requests++;
        r.stack.push(s);
        r.slices.push(s);
        break;
      }
      case "E": {
        seen(ts);
        const r = row(e.tid);
        const s = r.stack.pop();
        if (s) {
          s.end = ts;
          if (e.args && e.args.result !== undefined) s.result = e.args.result;
        }
        break;
      }
      case "X": {
        seen(ts);
        const r = row(e.tid);
        r.slices.push({ start: ts, end: ts + (+e.dur || 0), name: e.name, depth: r.stack.length, source: true });
        break;
      }
      case "i":
      case "I":
        seen(ts);
        row(e.tid).instants.push({ ts: ts, name: e.name, args: e.args });
        break;
      case "s":
        seen(ts);
        flowStarts.set(e.id, { tid: e.tid, ts: ts });
        break;
      case "f":
        seen(ts);
        flowEnds.push({ id: e.id, tid: e.tid, ts: ts });
        break;
      case "C": {
        seen(ts);
        const key = e.name + "#" + (e.id === undefined ? "" : e.id);
        let c = series.get(key);
        if (!c) {
          c = { name: e.name, fields: new Map() };
          series.set(key, c);
        }
        for (const field in e.args) {
          let points = c.fields.get(field);
          if (!points) {
            points = [];
            c.fields.set(field, points);
          }
          points.push([ts, +e.args[field]]);
        }
        break;
      }
    }
  }
  if (!isFinite(tMin)) { tMin = 0; tMax = 1; }
  if (tMax <= tMin) tMax = tMin + 1;
  // Rows are the named threads (the export names every row it uses), tasks
  // in spawn order with main first, then the fixed rows.
  const rowList = Array.from(rows.values()).filter((r) => r.named);
  rowList.sort((a, b) => a.sort - b.sort);
  rowList.forEach((r, i) => {
    r.index = i;
    r.slices.sort((a, b) => a.start - b.start);
    r.instants.sort((a, b) => a.ts - b.ts);
    r.maxDur = r.slices.reduce((m, s) => Math.max(m, s.end - s.start), 0);
  });
  const arrows = [];
  for (const f of flowEnds) {
    const s = flowStarts.get(f.id);
    const from = s && rows.get(s.tid), to = rows.get(f.tid);
    if (s && from && to && from.named && to.named) {
      arrows.push({ t0: s.ts, r0: from.index, t1: f.ts, r1: to.index });
    }
  }
  arrows.sort((a, b) => a.t0 - b.t0);
  const charts = Array.from(series.values());
  let seriesCount = 0;
  for (const c of charts) {
    seriesCount += c.fields.size;
    c.max = 1;
    c.retransmitMax = 1;
    for (const [field, points] of c.fields) {
      points.sort((a, b) => a[0] - b[0]);
      for (const p of points) {
        if (field === "retransmits") c.retransmitMax = Math.max(c.retransmitMax, p[1]);
        else c.max = Math.max(c.max, p[1]);
      }
    }
  }

  // ---- What was drawn, for people and for tests.
  const summary = document.getElementById("summary");
  const sliceCount = rowList.reduce((n, r) => n + r.slices.length, 0);
  summary.dataset.rows = rowList.length;
  summary.dataset.tasks = rowList.filter((r) => r.tid >= 1 && r.tid < 0xffffff00).length;
  summary.dataset.slices = sliceCount;
  summary.dataset.arrows = arrows.length;
  summary.dataset.requests = requests;
  summary.dataset.connections = charts.length;
  summary.dataset.series = seriesCount;
  summary.textContent = rowList.length + " rows, " + sliceCount + " slices, " + arrows.length +
    " wake-up arrows, " + requests + " HTTP requests, " + charts.length + " counter charts (" +
    seriesCount + " series), " + ((tMax - tMin) / 1000).toFixed(3) + " ms";
  const rowNames = document.getElementById("row-names");
  for (const r of rowList) {
    const li = document.createElement("li");
    li.textContent = r.name;
    rowNames.appendChild(li);
  }

  // ---- Drawing.
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const tip = document.getElementById("tip");
  const rowsH = rowList.length * ROW_H;
  const chartsTop = AXIS_H + rowsH + CHART_GAP;
  const height = chartsTop + charts.length * (CHART_H + CHART_GAP);
  let width = 0;
  let view = { t0: tMin, t1: tMax };

  function resize() {
    width = Math.max(600, document.documentElement.clientWidth);
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
  }
  const plotW = () => width - LABEL_W - 10;
  const x = (t) => LABEL_W + ((t - view.t0) / (view.t1 - view.t0)) * plotW();
  const timeAt = (px) => view.t0 + ((px - LABEL_W) / plotW()) * (view.t1 - view.t0);

  // The first element of sorted `list` whose key(e) is >= t.
  function lowerBound(list, t, key) {
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (key(list[mid]) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function sliceColour(s) {
    if (s.source) return COLOURS.source;
    if (s.name === "poll") return COLOURS.poll;
    if (s.name === "idle") return COLOURS.idle;
    if (s.name === "http request") return COLOURS.request;
    return COLOURS.span;
  }

  function niceStep(span, pixels) {
    const raw = span / Math.max(1, pixels / 110);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  function formatTime(us) {
    const a = Math.abs(us);
    if (a >= 1e6) return (us / 1e6).toFixed(3) + " s";
    if (a >= 1e3) return (us / 1e3).toFixed(3) + " ms";
    return us.toFixed(3) + " µs";
  }

  function drawAxis() {
    ctx.fillStyle = "#f4f4f4";
    ctx.fillRect(0, 0, width, AXIS_H);
    const step = niceStep(view.t1 - view.t0, plotW());
    ctx.fillStyle = "#303030";
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    for (let t = Math.ceil((view.t0 - tMin) / step) * step; t + tMin <= view.t1; t += step) {
      const px = Math.round(x(t + tMin));
      ctx.fillRect(px, AXIS_H - 6, 1, 6);
      ctx.fillText(formatTime(t), px + 3, AXIS_H / 2 - 2);
      ctx.fillStyle = "#ececec";
      ctx.fillRect(px, AXIS_H, 1, height - AXIS_H);
      ctx.fillStyle = "#303030";
    }
  }

  function drawRows() {
    ctx.font = "12px sans-serif";
    ctx.textBaseline = "middle";
    for (const r of rowList) {
      const top = AXIS_H + r.index * ROW_H;
      if (r.index % 2) {
        ctx.fillStyle = "#fafafa";
        ctx.fillRect(0, top, width, ROW_H);
      }
      // Slices that can be seen: from the first that may still be open.
      let i = lowerBound(r.slices, view.t0 - r.maxDur, (s) => s.start);
      const lastPx = [];
      for (; i < r.slices.length; i++) {
        const s = r.slices[i];
        if (s.start > view.t1) break;
        if (s.end < view.t0) continue;
        const x0 = Math.max(LABEL_W, Math.floor(x(s.start)));
        // HTTP requests stay visible at any zoom (at least 4 pixels wide).
        const least = s.name === "http request" ? 4 : 1;
        const x1 = Math.min(width, Math.max(x0 + least, Math.ceil(x(s.end))));
        // Many slices in one pixel column: draw that column once per depth.
        if (x1 - x0 <= 1 && lastPx[s.depth] === x0) continue;
        lastPx[s.depth] = x0;
        const inset = 3 + Math.min(s.depth, 2) * 3;
        ctx.fillStyle = sliceColour(s);
        ctx.fillRect(x0, top + inset, x1 - x0, ROW_H - 2 * inset);
        if (s.name === "http request" && x1 - x0 > 40) {
          const label = (s.detail || "") + (s.result !== undefined ? " " + s.result : "");
          ctx.save();
          ctx.beginPath();
          ctx.rect(x0, top, x1 - x0, ROW_H);
          ctx.clip();
          ctx.fillStyle = "#000000";
          ctx.fillText(label, x0 + 3, top + ROW_H / 2);
          ctx.restore();
        }
      }
      let j = lowerBound(r.instants, view.t0, (e) => e.ts);
      let lastInstant = -1;
      for (; j < r.instants.length; j++) {
        const e = r.instants[j];
        if (e.ts > view.t1) break;
        const px = Math.floor(x(e.ts));
        if (px === lastInstant) continue;
        lastInstant = px;
        ctx.fillStyle = e.name === "rx" ? COLOURS.rx : e.name === "tx" ? COLOURS.tx : COLOURS.instant;
        if (e.name === "tx") ctx.fillRect(px, top + 2, 2, ROW_H / 2 - 2);
        else if (e.name === "rx") ctx.fillRect(px, top + ROW_H / 2, 2, ROW_H / 2 - 2);
        else ctx.fillRect(px, top + 2, 2, ROW_H - 4);
      }
    }
  }

  function drawArrows() {
    ctx.strokeStyle = COLOURS.arrow;
    ctx.fillStyle = COLOURS.arrow;
    ctx.lineWidth = 1;
    const rowMid = (i) => AXIS_H + i * ROW_H + ROW_H / 2;
    let i = lowerBound(arrows, view.t0 - (view.t1 - view.t0), (a) => a.t0);
    let drawn = 0;
    for (; i < arrows.length && drawn < 20000; i++) {
      const a = arrows[i];
      if (a.t0 > view.t1) break;
      if (a.t1 < view.t0) continue;
      const x0 = x(a.t0), y0 = rowMid(a.r0), x1 = x(a.t1), y1 = rowMid(a.r1);
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      // The head: a filled triangle pointing at the woken poll.
      const angle = Math.atan2(y1 - y0, x1 - x0);
      ctx.beginPath();
      ctx.moveTo(x1, y1);
      ctx.lineTo(x1 - 9 * Math.cos(angle - 0.45), y1 - 9 * Math.sin(angle - 0.45));
      ctx.lineTo(x1 - 9 * Math.cos(angle + 0.45), y1 - 9 * Math.sin(angle + 0.45));
      ctx.closePath();
      ctx.fill();
      drawn++;
    }
  }

  function drawCharts() {
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "top";
    charts.forEach((c, n) => {
      const top = chartsTop + n * (CHART_H + CHART_GAP);
      ctx.fillStyle = "#f8f8f8";
      ctx.fillRect(LABEL_W, top, plotW(), CHART_H);
      ctx.fillStyle = "#202020";
      ctx.fillText(c.name, 8, top);
      ctx.fillText("max " + c.max + " bytes" + (c.fields.has("retransmits") ? ", " + c.retransmitMax + " retransmits" : ""), 8, top + 14);
      let legend = top + 30;
      let spare = 0;
      for (const [field, points] of c.fields) {
        const colour = SERIES_COLOURS[field] || SPARE_COLOURS[spare++ % SPARE_COLOURS.length];
        ctx.fillStyle = colour;
        ctx.fillRect(8, legend + 3, 10, 6);
        ctx.fillText(field, 22, legend);
        legend += 12;
        const max = field === "retransmits" ? c.retransmitMax : c.max;
        const y = (v) => Math.round(top + CHART_H - 2 - (v / max) * (CHART_H - 4));
        // A step line: each value holds until the next sample.
        let k = Math.max(0, lowerBound(points, view.t0, (p) => p[0]) - 1);
        let px = LABEL_W, py = null;
        for (; k < points.length; k++) {
          const p = points[k];
          const nx = Math.min(width, Math.max(LABEL_W, Math.round(x(p[0]))));
          const ny = y(p[1]);
          if (py !== null) ctx.fillRect(px, py - 1, Math.max(1, nx - px), 2);
          if (py !== null && ny !== py) ctx.fillRect(nx - 1, Math.min(py, ny) - 1, 2, Math.abs(ny - py) + 2);
          px = nx;
          py = ny;
          if (p[0] > view.t1) break;
        }
        if (py !== null && px < width) ctx.fillRect(px, py - 1, Math.round(x(tMax)) - px, 2);
      }
    });
  }

  function drawLabels() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, AXIS_H, LABEL_W - 4, rowsH);
    ctx.fillStyle = "#202020";
    ctx.font = "12px sans-serif";
    ctx.textBaseline = "middle";
    for (const r of rowList) {
      ctx.fillText(r.name, 8, AXIS_H + r.index * ROW_H + ROW_H / 2, LABEL_W - 16);
    }
    ctx.fillStyle = "#d0d0d0";
    ctx.fillRect(LABEL_W - 4, AXIS_H, 1, rowsH);
  }

  function draw() {
    ctx.clearRect(0, 0, width, height);
    drawAxis();
    drawRows();
    drawCharts();
    drawArrows();
    // The row names over anything drawn left of the plot.
    drawLabels();
  }
  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  }

  // ---- Zoom and pan.
  function zoom(factor, aroundPx) {
    const t = timeAt(aroundPx);
    const span = Math.min(tMax - tMin, Math.max(0.01, (view.t1 - view.t0) * factor));
    const f = (t - view.t0) / (view.t1 - view.t0);
    view.t0 = t - f * span;
    view.t1 = view.t0 + span;
    clamp();
    redraw();
  }
  function clamp() {
    const span = view.t1 - view.t0;
    if (view.t0 < tMin) { view.t0 = tMin; view.t1 = tMin + span; }
    if (view.t1 > tMax) { view.t1 = tMax; view.t0 = tMax - span; }
  }
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      const d = (ev.deltaX || ev.deltaY) / plotW() * (view.t1 - view.t0);
      view.t0 += d;
      view.t1 += d;
      clamp();
      redraw();
    } else {
      zoom(Math.exp(ev.deltaY * 0.002), ev.offsetX);
    }
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("mousedown", (ev) => {
    drag = { px: ev.clientX, t0: view.t0, t1: view.t1 };
    canvas.classList.add("dragging");
  });
  window.addEventListener("mouseup", () => {
    drag = null;
    canvas.classList.remove("dragging");
  });
  window.addEventListener("mousemove", (ev) => {
    if (drag) {
      const d = ((drag.px - ev.clientX) / plotW()) * (drag.t1 - drag.t0);
      view.t0 = drag.t0 + d;
      view.t1 = drag.t1 + d;
      clamp();
      redraw();
      return;
    }
    showTip(ev);
  });
  const middle = () => LABEL_W + plotW() / 2;
  document.getElementById("zoom-in").onclick = () => zoom(0.5, middle());
  document.getElementById("zoom-out").onclick = () => zoom(2, middle());
  document.getElementById("left").onclick = () => {
    const d = (view.t1 - view.t0) / 4;
    view.t0 -= d; view.t1 -= d; clamp(); redraw();
  };
  document.getElementById("right").onclick = () => {
    const d = (view.t1 - view.t0) / 4;
    view.t0 += d; view.t1 += d; clamp(); redraw();
  };
  document.getElementById("reset").onclick = () => { view = { t0: tMin, t1: tMax }; redraw(); };
  window.addEventListener("resize", () => { resize(); redraw(); });

  // What is under the pointer: the slice on a row, with its details.
  function showTip(ev) {
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left, py = ev.clientY - rect.top;
    const index = Math.floor((py - AXIS_H) / ROW_H);
    const r = rowList[index];
    let text = null;
    if (r && px >= LABEL_W) {
      const t = timeAt(px), slack = (view.t1 - view.t0) / plotW() * 2;
      let best = null;
      let i = lowerBound(r.slices, t - r.maxDur - slack, (s) => s.start);
      for (; i < r.slices.length && r.slices[i].start <= t + slack; i++) {
        const s = r.slices[i];
        if (s.end + slack >= t && (!best || s.depth > best.depth)) best = s;
      }
      if (best) {
        text = r.name + "\n" + best.name + (best.detail ? " " + best.detail : "") +
          (best.result !== undefined ? " → " + best.result : "") +
          "\nat " + formatTime(best.start - tMin) + ", " + formatTime(best.end - best.start);
      }
    }
    if (text) {
      tip.textContent = text;
      tip.style.left = ev.clientX + 12 + "px";
      tip.style.top = ev.clientY + 12 + "px";
      tip.style.display = "block";
    } else {
      tip.style.display = "none";
    }
  }

  resize();
  draw();
  // How long reading the trace and the first drawing took, for measuring.
  summary.dataset.renderMs = Math.round(performance.now() - started);
  summary.title = "read and drawn in " + summary.dataset.renderMs + " ms";
  document.body.dataset.rendered = "yes";
})();

// moesim report pages: interactive SVG charts and sortable tables, no dependencies, works offline.
// Each div of class "chart" is drawn from the JSON spec in its data-spec attribute (line, bar, heatmap).
// Hover shows values; drag across a chart zooms into that x-range; double-click resets.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#0067A5", "#F38400", "#008856", "#BE0032", "#875692", "#882D17", "#E68FAC", "#848482",
    "#8DB600", "#F3C300", "#604E97", "#2B3D26", "#A1CAF1", "#E25822", "#C2B280", "#B3446C", "#654522",
    "#F99379", "#DCD300", "#F6A600"];
  var DASH = ["", "6 3", "2 2", "8 3 2 3"];
  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function nice(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    var ticks = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return ticks;
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return (+v.toPrecision(4)).toLocaleString("en-US");
  }
  function color(i) { return PALETTE[i % PALETTE.length]; }
  function dash(i) { return DASH[Math.floor(i / PALETTE.length) % DASH.length]; }

  function draw(div) {
    var spec = JSON.parse(div.getAttribute("data-spec"));
    var view = spec._view || null;
    div.innerHTML = "";
    var W = Math.max(div.clientWidth || 900, 480), H = spec.height || 320;
    var cats = spec.categories || null;
    var rot = cats && (cats.length > 8 || cats.some(function (c) { return String(c).length > 8; }));
    var M = {l: 70, r: 16, t: 12, b: rot ? 92 : 44};
    var svg = el("svg", {width: W, height: H, role: "img"}, div);
    var tip = document.createElement("div");
    tip.className = "tip";
    div.appendChild(tip);
    var pw = W - M.l - M.r, ph = H - M.t - M.b;
    var x0, x1, xs, ys, y0 = Infinity, y1 = -Infinity, all = [];
    var series = spec.series || [];
    if (spec.kind === "heatmap") return heatmap(div, svg, spec, W, H, M, tip);
    if (cats) {
      x0 = view ? view[0] : 0; x1 = view ? view[1] : cats.length - 1;
      xs = function (i) { return M.l + (i - x0 + 0.5) * pw / (x1 - x0 + 1); };
    } else {
      series.forEach(function (s) { all = all.concat(s.x); });
      x0 = view ? view[0] : Math.min.apply(null, all); x1 = view ? view[1] : Math.max.apply(null, all);
      if (!(x1 > x0)) { x1 = x0 + 1; }
      xs = function (v) { return M.l + (v - x0) / (x1 - x0) * pw; };
    }
    var inView = function (s, i) { var x = cats ? i : s.x[i]; return x >= x0 - 1e-12 && x <= x1 + 1e-12; };
    var stackTop = [];
    series.forEach(function (s) {
      s.y.forEach(function (v, i) {
        if (!inView(s, i) || v === null) return;
        if (spec.stacked) { stackTop[i] = (stackTop[i] || 0) + v; v = stackTop[i]; }
        y0 = Math.min(y0, v); y1 = Math.max(y1, v);
      });
    });
    (spec.hlines || []).forEach(function (h) { y0 = Math.min(y0, h.y); y1 = Math.max(y1, h.y); });
    if (spec.kind === "bar" || spec.zero !== false) y0 = Math.min(0, y0);
    if (!isFinite(y0)) { y0 = 0; y1 = 1; }
    var yt = nice(y0, y1 + (y1 - y0) * 0.04, 5);
    y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]);
    ys = function (v) { return M.t + ph - (v - y0) / (y1 - y0 || 1) * ph; };
    yt.forEach(function (t) {
      el("line", {x1: M.l, x2: M.l + pw, y1: ys(t), y2: ys(t), class: "grid"}, svg);
      el("text", {x: M.l - 6, y: ys(t) + 4, "text-anchor": "end", class: "tick"}, svg).textContent = fmt(t);
    });
    if (cats) {
      var every = Math.max(1, Math.ceil((x1 - x0 + 1) / Math.max(1, pw / (rot ? 16 : 60))));
      for (var i = Math.ceil(x0); i <= x1; i += every) {
        var t = el("text", {x: xs(i), y: M.t + ph + 14, class: "tick",
          "text-anchor": rot ? "end" : "middle",
          transform: rot ? "rotate(-40 " + xs(i) + " " + (M.t + ph + 14) + ")" : ""}, svg);
        t.textContent = cats[i];
      }
    } else {
      var ints = all.every(function (v) { return v === Math.round(v); });  // node counts: no tick at 2.5
      nice(x0, x1, Math.max(2, Math.floor(pw / 90))).forEach(function (t) {
        if (t < x0 || t > x1 || (ints && t !== Math.round(t))) return;
        el("text", {x: xs(t), y: M.t + ph + 16, "text-anchor": "middle", class: "tick"}, svg).textContent = fmt(t);
      });
    }
    el("text", {x: M.l + pw / 2, y: H - 6, "text-anchor": "middle", class: "label"}, svg).textContent = spec.xlabel || "";
    el("text", {x: 14, y: M.t + ph / 2, "text-anchor": "middle", class: "label",
      transform: "rotate(-90 14 " + (M.t + ph / 2) + ")"}, svg).textContent = spec.ylabel || "";
    var clipId = "c" + Math.random().toString(36).slice(2);
    var cp = el("clipPath", {id: clipId}, el("defs", {}, svg));
    el("rect", {x: M.l, y: M.t, width: pw, height: ph}, cp);
    var g = el("g", {"clip-path": "url(#" + clipId + ")"}, svg);
    var base = [];
    series.forEach(function (s, k) {
      if (spec.kind === "bar") {
        var n = spec.stacked ? 1 : series.length, bw = pw / (x1 - x0 + 1) * 0.8 / n;
        s.y.forEach(function (v, i) {
          if (!inView(s, i) || v === null) return;
          var b = spec.stacked ? (base[i] || 0) : 0, top = b + v;
          var x = xs(i) - pw / (x1 - x0 + 1) * 0.4 + (spec.stacked ? 0 : k * bw);
          var r = el("rect", {x: x, y: ys(Math.max(b, top)), width: Math.max(bw, 1),
            height: Math.abs(ys(b) - ys(top)), fill: color(k), class: "mark"}, g);
          r.addEventListener("mousemove", function (e) {
            show(e, (cats ? cats[i] : i) + "<br><b>" + s.name + "</b>: " + fmt(v) + (spec.yunit ? " " + spec.yunit : ""));
          });
          r.addEventListener("mouseleave", hide);
          if (spec.stacked) base[i] = top;
        });
      } else {
        var d = "";
        s.y.forEach(function (v, i) {
          if (v === null || isNaN(v)) return;
          d += (d ? "L" : "M") + xs(s.x[i]).toFixed(1) + " " + ys(v).toFixed(1);
        });
        el("path", {d: d, stroke: color(k), "stroke-dasharray": dash(k), fill: "none", "stroke-width": 1.8}, g);
        if (s.x.length <= 60) s.x.forEach(function (xv, i) {
          if (s.y[i] === null) return;
          el("circle", {cx: xs(xv), cy: ys(s.y[i]), r: 2.6, fill: color(k)}, g);
        });
      }
    });
    (spec.hlines || []).forEach(function (h) {
      el("line", {x1: M.l, x2: M.l + pw, y1: ys(h.y), y2: ys(h.y), class: "hline"}, svg);
      el("text", {x: M.l + pw - 4, y: ys(h.y) - 4, "text-anchor": "end", class: "tick"}, svg).textContent = h.label;
    });
    function show(e, htmlText) {
      tip.innerHTML = htmlText; tip.style.display = "block";
      var r = div.getBoundingClientRect();
      tip.style.left = Math.min(e.clientX - r.left + 12, W - 180) + "px";
      tip.style.top = (e.clientY - r.top + 12) + "px";
    }
    function hide() { tip.style.display = "none"; }
    var ov = el("rect", {x: M.l, y: M.t, width: pw, height: ph, class: "overlay"}, svg);
    if (spec.kind === "bar") ov.setAttribute("pointer-events", "none");
    var brush = el("rect", {y: M.t, height: ph, width: 0, class: "brush"}, svg), start = null;
    function xval(px) { return cats ? x0 - 0.5 + (px - M.l) / pw * (x1 - x0 + 1) : x0 + (px - M.l) / pw * (x1 - x0); }
    svg.addEventListener("mousedown", function (e) { start = e.offsetX; brush.setAttribute("x", start); });
    svg.addEventListener("mousemove", function (e) {
      if (start !== null) {
        brush.setAttribute("x", Math.min(start, e.offsetX));
        brush.setAttribute("width", Math.abs(e.offsetX - start));
        return;
      }
      if (spec.kind !== "line" || e.offsetX < M.l) return;
      var xv = xval(e.offsetX), lines = [];
      series.forEach(function (s, k) {
        var best = -1, bd = Infinity;
        s.x.forEach(function (v, i) { var dd = Math.abs(v - xv); if (dd < bd && s.y[i] !== null) { bd = dd; best = i; } });
        if (best >= 0) lines.push("<span style='color:" + color(k) + "'>■</span> " + s.name + ": " +
          fmt(s.y[best]) + (spec.yunit ? " " + spec.yunit : "") + " at " + fmt(s.x[best]));
      });
      show(e, lines.join("<br>"));
    });
    svg.addEventListener("mouseleave", function () { hide(); });
    window.addEventListener("mouseup", function (e) {
      if (start === null) return;
      var a = xval(Math.min(start, e.offsetX)), b = xval(Math.max(start, e.offsetX));
      start = null; brush.setAttribute("width", 0);
      if (Math.abs(b - a) < (cats ? 0.9 : (x1 - x0) / 200)) return;
      spec._view = cats ? [Math.max(0, Math.round(a)), Math.min(cats.length - 1, Math.round(b))] : [a, b];
      div.setAttribute("data-spec", JSON.stringify(spec)); draw(div);
    });
    svg.addEventListener("dblclick", function () { delete spec._view; div.setAttribute("data-spec", JSON.stringify(spec)); draw(div); });
    legend(div, series);
  }

  function legend(div, series) {
    if (series.length < 2) return;
    var box = document.createElement("div");
    box.className = "legend";
    series.forEach(function (s, k) {
      var item = document.createElement("span");
      item.innerHTML = "<i style='background:" + color(k) + "'></i>" + s.name;
      box.appendChild(item);
    });
    div.appendChild(box);
  }

  function heatmap(div, svg, spec, W, H, M, tip) {
    var z = spec.z, rows = z.length, cols = z[0].length, lo = Infinity, hi = -Infinity;
    z.forEach(function (r) { r.forEach(function (v) { lo = Math.min(lo, v); hi = Math.max(hi, v); }); });
    var pw = W - M.l - M.r - 60, ph = H - M.t - M.b, cw = pw / cols, rh = ph / rows;
    function shade(v) {
      var t = (v - lo) / (hi - lo || 1), c = [[13, 8, 135], [204, 71, 120], [240, 249, 33]];
      var seg = t < 0.5 ? 0 : 1, u = t < 0.5 ? t * 2 : (t - 0.5) * 2, a = c[seg], b = c[seg + 1];
      return "rgb(" + [0, 1, 2].map(function (j) { return Math.round(a[j] + (b[j] - a[j]) * u); }).join(",") + ")";
    }
    z.forEach(function (r, i) {
      r.forEach(function (v, j) {
        var c = el("rect", {x: M.l + j * cw, y: M.t + i * rh, width: cw + 0.5, height: rh + 0.5, fill: shade(v)}, svg);
        c.addEventListener("mousemove", function (e) {
          tip.innerHTML = (spec.xlabel || "x") + " " + (xl ? xl[j] : j) + ", " + (spec.ylabel || "y") + " " +
            (yl ? yl[i] : i) + "<br><b>" +
            fmt(v) + "</b> " + (spec.zlabel || "");
          tip.style.display = "block";
          var rr = div.getBoundingClientRect();
          tip.style.left = Math.min(e.clientX - rr.left + 12, W - 180) + "px"; tip.style.top = (e.clientY - rr.top + 12) + "px";
        });
        c.addEventListener("mouseleave", function () { tip.style.display = "none"; });
      });
    });
    for (var k = 0; k <= 10; k++) {
      el("rect", {x: M.l + pw + 20, y: M.t + ph * (1 - (k + 1) / 11), width: 14, height: ph / 11 + 0.5,
        fill: shade(lo + (hi - lo) * k / 10)}, svg);
    }
    var xl = spec.xticks || null, yl = spec.yticks || null;
    var xe = Math.max(1, Math.ceil(cols * 40 / pw)), ye = Math.max(1, Math.ceil(rows * 16 / ph));
    for (var j = 0; j < cols; j += xe) {
      el("text", {x: M.l + (j + 0.5) * cw, y: M.t + ph + 14, "text-anchor": "middle", class: "tick"}, svg)
        .textContent = xl ? xl[j] : j;
    }
    for (var i = 0; i < rows; i += ye) {
      el("text", {x: M.l - 6, y: M.t + (i + 0.5) * rh + 4, "text-anchor": "end", class: "tick"}, svg)
        .textContent = yl ? yl[i] : i;
    }
    el("text", {x: M.l + pw + 38, y: M.t + 8, class: "tick"}, svg).textContent = fmt(hi);
    el("text", {x: M.l + pw + 38, y: M.t + ph, class: "tick"}, svg).textContent = fmt(lo);
    el("text", {x: M.l + pw / 2, y: H - 6, "text-anchor": "middle", class: "label"}, svg).textContent = spec.xlabel || "";
    el("text", {x: 14, y: M.t + ph / 2, "text-anchor": "middle", class: "label",
      transform: "rotate(-90 14 " + (M.t + ph / 2) + ")"}, svg).textContent = spec.ylabel || "";
  }

  function sortable(table) {
    var heads = table.querySelectorAll("th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        heads.forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        rows.sort(function (a, b) {
          var u = a.cells[col].getAttribute("data-v"), v = b.cells[col].getAttribute("data-v");
          var nu = parseFloat(u), nv = parseFloat(v);
          if (!isNaN(nu) && !isNaN(nv)) return (nu - nv) * dir;
          if (isNaN(nu) !== isNaN(nv)) return isNaN(nu) ? 1 : -1;
          return String(u).localeCompare(String(v)) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  window.addEventListener("load", function () {
    var charts = document.querySelectorAll(".chart"), ok = 0;
    charts.forEach(function (c) {
      try { draw(c); if (c.querySelector("svg")) ok++; } catch (err) { c.textContent = "chart failed: " + err; throw err; }
    });
    document.querySelectorAll("table.rows").forEach(sortable);
    document.querySelectorAll(".scroll").forEach(function (box) {  // wider than the window: say so
      if (box.scrollWidth <= box.clientWidth + 1) return;
      var hint = document.createElement("p");
      hint.className = "hint";
      hint.textContent = "The table is wider than the window: scroll it sideways (the first column stays).";
      box.parentNode.insertBefore(hint, box);
    });
    document.body.setAttribute("data-charts", ok + "/" + charts.length);
  });
  window.addEventListener("error", function () {
    document.body.setAttribute("data-errors", (+(document.body.getAttribute("data-errors") || 0) + 1) + "");
  });
})();

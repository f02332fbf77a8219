/* The map of a model version's cases (model page): a canvas of dots from the map's JSON.
   Colour by pool state or by score; hover a dot for its case id and score; click to open it.
   Plain canvas, no library. Each `.case-map[data-case-map]` element is drawn once, also when
   htmx swaps in the map card after the worker has computed it. */
(function () {
  "use strict";

  var STATES = [
    // Drawn in this order: the common states first, the rare ones on top.
    { key: "U", name: "unlabeled (U)", color: "#c3c8d0", r: 2 },
    { key: "skipped", name: "skipped", color: "#8c6d46", r: 3 },
    { key: "shown", name: "in a batch, open", color: "#8b5cf6", r: 3.5 },
    { key: "not_confirmed", name: "not confirmed", color: "#2563eb", r: 3.5 },
    { key: "confirmed", name: "confirmed", color: "#f59e0b", r: 4 },
    { key: "P", name: "seed positive (P)", color: "#dc2626", r: 3.5 },
  ];
  var BY_KEY = {};
  STATES.forEach(function (s, i) { BY_KEY[s.key] = Object.assign({ order: i }, s); });
  // Five stops of viridis: low scores dark purple, high scores yellow.
  var RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var PAD = 14;
  var HOVER_PX = 9;
  var EPS = 1e-6;

  function rampColor(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    var i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i, a = RAMP[i], b = RAMP[i + 1];
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + f * (b[k] - a[k])); }).join(",") + ")";
  }

  function fmtScore(s) { return s === 0 ? "0" : s < 0.001 ? s.toExponential(1) : s.toFixed(3); }

  function CaseMap(root, data) {
    this.root = root;
    this.data = data;
    this.canvas = root.querySelector("canvas");
    this.tip = root.querySelector(".case-map-tip");
    this.card = root.closest(".case-map-card") || document;
    this.legend = this.card.querySelector(".case-map-legend");
    this.mode = "state";
    var p = data.points, n = p.x.length;
    this.n = n;
    // Colour by score on a log scale between the sample's lowest and highest score: PU scores
    // span orders of magnitude, and equal scores keep equal colours.
    var order = Array.from({ length: n }, function (_, i) { return i; });
    order.sort(function (a, b) { return p.score[a] - p.score[b]; });
    var lo = Math.log(p.score[order[0]] + EPS), hi = Math.log(p.score[order[n - 1]] + EPS);
    this.shade = new Float32Array(n);
    for (var i = 0; i < n; i++) {
      this.shade[i] = hi > lo ? (Math.log(p.score[i] + EPS) - lo) / (hi - lo) : 0.5;
    }
    this.byScore = order;
    this.byState = order.slice().sort(function (a, b) {
      return (BY_KEY[p.state[a]] || BY_KEY.U).order - (BY_KEY[p.state[b]] || BY_KEY.U).order;
    });
    this.hover = -1;
    this.bind();
    this.draw();
  }

  CaseMap.prototype.size = function () {
    var rect = this.canvas.getBoundingClientRect();
    return { w: rect.width, h: rect.height };
  };

  // Where point i lies, in CSS pixels from the canvas's top left corner.
  CaseMap.prototype.at = function (i) {
    var s = this.size(), p = this.data.points;
    return { x: PAD + p.x[i] * (s.w - 2 * PAD), y: PAD + (1 - p.y[i]) * (s.h - 2 * PAD) };
  };

  CaseMap.prototype.draw = function () {
    var s = this.size(), ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(s.w * ratio);
    this.canvas.height = Math.round(s.h * ratio);
    var ctx = this.canvas.getContext("2d"), p = this.data.points;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, s.w, s.h);
    var order = this.mode === "state" ? this.byState : this.byScore;
    for (var k = 0; k < order.length; k++) {
      var i = order[k], xy = this.at(i), st = BY_KEY[p.state[i]] || BY_KEY.U;
      var r = this.mode === "state" ? st.r : 2 + 2 * this.shade[i];
      ctx.beginPath();
      ctx.arc(xy.x, xy.y, r, 0, 2 * Math.PI);
      ctx.fillStyle = this.mode === "state" ? st.color : rampColor(this.shade[i]);
      ctx.globalAlpha = this.mode === "state" && st.key === "U" ? 0.6 : 0.9;
      ctx.fill();
      if (p.batch[i]) {
        ctx.globalAlpha = 1;
        ctx.lineWidth = 1;
        ctx.strokeStyle = "#1d2430";
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    if (this.hover >= 0) {
      var h = this.at(this.hover);
      ctx.beginPath();
      ctx.arc(h.x, h.y, 7, 0, 2 * Math.PI);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#111827";
      ctx.stroke();
    }
    this.drawLegend();
  };

  CaseMap.prototype.drawLegend = function () {
    if (!this.legend) return;
    var counts = {}, p = this.data.points;
    p.state.forEach(function (st) { counts[st] = (counts[st] || 0) + 1; });
    var nBatch = p.batch.reduce(function (a, b) { return a + b; }, 0);
    var html = "";
    if (this.mode === "state") {
      html = STATES.slice().reverse().filter(function (s) { return counts[s.key]; }).map(function (s) {
        return '<span class="case-map-key"><i style="background:' + s.color + '"></i>' + s.name + " " + counts[s.key].toLocaleString() + "</span>";
      }).join("");
    } else {
      var sc = this.byScore.map(function (i) { return p.score[i]; });
      var q = function (f) { return fmtScore(sc[Math.min(sc.length - 1, Math.floor(f * (sc.length - 1)))]); };
      html = '<span class="case-map-key">score (log scale): ' + q(0) +
        ' <i class="case-map-ramp"></i> ' + q(1) + " · median " + q(0.5) + " · 90th percentile " + q(0.9) + " · 99th " + q(0.99) + "</span>";
    }
    if (nBatch) html += '<span class="case-map-key"><i class="ring"></i>in this version\'s batch ' + nBatch + "</span>";
    this.legend.innerHTML = html;
  };

  CaseMap.prototype.nearest = function (x, y) {
    var best = -1, bestD = HOVER_PX * HOVER_PX;
    for (var i = 0; i < this.n; i++) {
      var xy = this.at(i), d = (xy.x - x) * (xy.x - x) + (xy.y - y) * (xy.y - y);
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  };

  CaseMap.prototype.showTip = function (i, x, y) {
    var p = this.data.points, st = BY_KEY[p.state[i]] || { name: p.state[i] };
    this.tip.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = p.case_id[i] === null ? "a case not in your queue" : p.case_id[i];
    this.tip.appendChild(strong);
    this.tip.appendChild(document.createTextNode(" · score " + fmtScore(p.score[i]) + " · " + st.name + (p.batch[i] ? " · in the batch" : "")));
    this.tip.hidden = false;
    var s = this.size();
    this.tip.style.left = Math.min(x + 12, s.w - 220) + "px";
    this.tip.style.top = Math.max(y - 34, 0) + "px";
  };

  CaseMap.prototype.caseUrl = function (i) {
    return this.data.case_url.replace("{pk}", String(this.data.points.case[i]));
  };

  CaseMap.prototype.bind = function () {
    var self = this;
    this.canvas.addEventListener("mousemove", function (ev) {
      var rect = self.canvas.getBoundingClientRect();
      var x = ev.clientX - rect.left, y = ev.clientY - rect.top, i = self.nearest(x, y);
      if (i !== self.hover) { self.hover = i; self.draw(); }
      self.canvas.style.cursor = i >= 0 && self.data.points.case[i] !== null ? "pointer" : "default";
      if (i >= 0) self.showTip(i, x, y); else self.tip.hidden = true;
    });
    this.canvas.addEventListener("mouseleave", function () {
      self.hover = -1; self.tip.hidden = true; self.draw();
    });
    this.canvas.addEventListener("click", function (ev) {
      var rect = self.canvas.getBoundingClientRect();
      var i = self.nearest(ev.clientX - rect.left, ev.clientY - rect.top);
      if (i >= 0 && self.data.points.case[i] !== null) window.location.assign(self.caseUrl(i));
    });
    this.card.querySelectorAll('input[type=radio][value]').forEach(function (input) {
      input.addEventListener("change", function () {
        if (input.checked) { self.mode = input.value; self.draw(); }
      });
    });
    window.addEventListener("resize", function () { self.draw(); });
  };

  // Page positions of the dots (for a test, or a person's script): case id, pk, x, y.
  CaseMap.prototype.positions = function () {
    var rect = this.canvas.getBoundingClientRect(), p = this.data.points, out = [];
    for (var i = 0; i < this.n; i++) {
      var xy = this.at(i);
      out.push({ case_id: p.case_id[i], pk: p.case[i], state: p.state[i], x: rect.left + xy.x, y: rect.top + xy.y });
    }
    return out;
  };

  function init(root) {
    if (root.dataset.caseMapState) return;
    root.dataset.caseMapState = "loading";
    fetch(root.dataset.caseMap, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || body.detail || response.statusText);
          return body;
        });
      })
      .then(function (data) {
        root.caseMap = new CaseMap(root, data);
        root.dataset.caseMapState = "ready";
      })
      .catch(function (err) {
        root.dataset.caseMapState = "failed";
        var msg = document.createElement("p");
        msg.className = "error";
        msg.setAttribute("role", "alert");
        msg.textContent = "The map could not be loaded: " + err.message;
        root.replaceWith(msg);
      });
  }

  function initAll() { document.querySelectorAll(".case-map[data-case-map]").forEach(init); }
  document.addEventListener("DOMContentLoaded", initAll);
  document.addEventListener("htmx:afterSettle", initAll);
})();

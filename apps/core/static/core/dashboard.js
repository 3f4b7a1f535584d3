// The admin home page's dashboard: every 5 s it reads dashboard.json and redraws health, jobs, the
// chart, failures and free space in place. Text goes in with textContent only: job descriptions and
// errors are user input.
(function () {
  const box = document.getElementById("portal-dashboard");
  if (!box) return;
  const REFRESH_MS = 5000;
  const COLOURS = ["#417690", "#e0a030", "#5b9c5b", "#b0413e", "#7b68a6", "#4aa3a3", "#999"];
  let chart = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (v !== undefined && v !== null) node.setAttribute(k, v); });
    children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return node;
  }
  function link(text, href) { return href ? el("a", {href}, text) : el("span", {}, text); }
  function gb(bytes) { return (bytes / 1e9).toFixed(1) + " GB"; }
  function fill(id, nodes) { document.getElementById(id).replaceChildren(...nodes); }

  function health(parts) {
    fill("dash-health", parts.map((p) => {
      const cls = p.state === "up" ? "up" : ["down", "saturated", "degraded"].includes(p.state) ? p.state : "other";
      const li = el("li", {"data-part": p.name}, el("span", {class: "dash-state " + cls}, p.state), " ", p.name);
      if (p.restarts) li.append(el("span", {class: "dash-why"}, " · restarted " + p.restarts + "×"));
      if (p.problem) li.append(el("div", {class: "dash-why"}, p.problem));
      return li;
    }));
  }
  function jobs(rows) {
    const body = el("tbody");
    if (!rows.length) body.append(el("tr", {}, el("td", {}, "Nothing running or waiting.")));
    rows.forEach((j) => {
      const bar = el("progress", {max: Math.max(j.total, 1), value: j.done});
      const counts = j.done + "/" + j.total + " done" + (j.failed ? " · " + j.failed + " failed" : "");
      body.append(el("tr", {"data-status": j.status},
        el("td", {}, link(j.job, j.link), el("div", {class: "dash-why"}, j.app + (j.description ? " · " + j.description : ""))),
        el("td", {}, bar, el("div", {class: "dash-why"}, counts)),
        el("td", {class: "dash-state-text"}, j.state || j.status)));
    });
    document.getElementById("dash-jobs").replaceChildren(body);
  }
  function throughput(data) {
    const labels = data.hours.map((h) => h.slice(11, 16));
    const datasets = Object.keys(data.apps).sort().map((app, n) => ({
      label: app, data: data.apps[app], backgroundColor: COLOURS[n % COLOURS.length], stack: "all"}));
    if (typeof Chart === "undefined") return;
    if (!chart) {
      chart = new Chart(document.getElementById("dash-chart"), {
        type: "bar", data: {labels, datasets},
        options: {animation: false, maintainAspectRatio: false, responsive: true,
                  scales: {x: {stacked: true, ticks: {maxRotation: 0, autoSkip: true}}, y: {stacked: true, beginAtZero: true}},
                  plugins: {legend: {position: "bottom"}}}});
    } else {
      chart.data.labels = labels;
      chart.data.datasets = datasets;
      chart.update();
    }
    box.dataset.instances = JSON.stringify(data.apps);
  }
  function attention(rows) {
    if (!rows.length) { fill("dash-attention", [el("li", {}, "Nothing failed in the last 24 hours.")]); return; }
    fill("dash-attention", rows.map((r) => el("li", {},
      link(r.job, r.link), " " + r.status + " · " + r.app,
      r.error ? el("div", {class: "dash-why"}, r.error) : "")));
  }
  function disk(rows) {
    fill("dash-disk", rows.map((d) => {
      const low = d.required_bytes && d.free_bytes < d.required_bytes;
      const bar = el("span", {class: "dash-bar" + (low ? " low" : "")}, el("span", {style: "width:" + Math.round(d.used_fraction * 100) + "%"}));
      return el("li", {"data-folder": d.folder}, d.folder + ": " + gb(d.free_bytes) + " free of " + gb(d.total_bytes) +
        (low ? " (below " + gb(d.required_bytes) + ")" : ""), bar);
    }));
  }
  async function refresh() {
    const response = await fetch(box.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) return;
    const data = await response.json();
    health(data.health); jobs(data.jobs); throughput(data.throughput); attention(data.attention); disk(data.disk);
    document.getElementById("dash-updated").textContent = new Date(data.at).toLocaleTimeString();
    box.dataset.refreshed = String((Number(box.dataset.refreshed) || 0) + 1);
  }
  refresh().catch(() => {});
  setInterval(() => refresh().catch(() => {}), REFRESH_MS);
})();

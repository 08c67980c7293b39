// Keel UI: builds each page from the JSON API. Plain JavaScript, no build step, nothing fetched from elsewhere.
//
// Every piece of user text (names, descriptions, values) goes into the page through textContent or
// setAttribute, never innerHTML: a model named "<script>…" shows as text. The page's arguments come from
// data- attributes the server escaped, and from the URL's query string (so every view is bookmarkable).
"use strict";

(function () {
  const app = document.getElementById("app");
  const args = app.dataset;
  const query = new URLSearchParams(window.location.search);
  // The path the UI is served under ("/ui" inside `keel serve --ui`, "" at the root): every URL the script makes
  // starts with it; links and forms get it in el(), API calls in api().
  const BASE = args.base || "";
  const rooted = (url) => (typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? BASE + url : url);
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7b83", "#6e7781"];

  // -- DOM helpers ---------------------------------------------------------------------------------------------
  function add(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "href" || key === "action") node.setAttribute(key, rooted(String(value)));
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    return add(node, children);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return add(node, children);
  }

  function link(href, text) {
    return el("a", { href: href }, text);
  }

  function path(...parts) {
    return "/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
  }

  function fmt(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") {
      if (Number.isInteger(value)) return String(value);
      return Math.abs(value) >= 1e5 || (Math.abs(value) < 1e-3 && value !== 0) ? value.toExponential(3) : String(+value.toFixed(4));
    }
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  function when(value) {
    return value ? value.replace("T", " ").slice(0, 19) : "—";
  }

  function cell(value) {
    if (value instanceof Node) return el("td", {}, value);
    return el("td", typeof value === "number" ? { class: "num" } : {}, fmt(value));
  }

  function table(headers, rows, attrs) {
    const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
    const body = rows.map((row) => {
      const cells = Array.isArray(row) ? row : row.cells;
      return el("tr", Array.isArray(row) ? {} : row.attrs, ...cells.map(cell));
    });
    return el("table", attrs || {}, el("thead", {}, head), el("tbody", {}, ...body));
  }

  function facts(pairs) {
    const list = el("dl", { class: "facts" });
    for (const [key, value] of pairs) add(list, [el("dt", {}, key), el("dd", {}, value instanceof Node ? value : fmt(value))]);
    return list;
  }

  function tags(names) {
    return el("span", {}, ...names.map((n) => el("span", { class: "tag" }, n)));
  }

  function mapTable(object, keyName, valueName) {
    const entries = Object.entries(object || {});
    if (!entries.length) return el("p", { class: "muted" }, "none");
    return table([keyName, valueName], entries.map(([k, v]) => [k, v]));
  }

  function render(...nodes) {
    const title = app.querySelector("h1");
    app.replaceChildren(title, ...nodes.filter((n) => n));
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(url, options) {
    const response = await fetch(rooted(url), options);
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body));
      throw new ApiError(response.status, detail || response.statusText);
    }
    return body;
  }

  // -- charts (inline SVG) -------------------------------------------------------------------------------------
  function barChart(title, labels, values) {
    const width = 360;
    const rowHeight = 22;
    const height = 28 + rowHeight * labels.length;
    const numbers = values.map((v) => (typeof v === "number" ? v : 0));
    const high = Math.max(...numbers.map(Math.abs), 1e-12);
    const chart = svg("svg", { class: "chart", width: width, height: height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    add(chart, [svg("text", { x: 8, y: 16 }, title)]);
    labels.forEach((label, i) => {
      const y = 26 + i * rowHeight;
      const length = (Math.abs(numbers[i]) / high) * (width - 170);
      add(chart, [
        svg("text", { x: 8, y: y + 14 }, label),
        svg("rect", { x: 90, y: y + 3, width: Math.max(length, 1), height: rowHeight - 8, fill: COLORS[i % COLORS.length] }),
        svg("text", { x: 96 + length, y: y + 14, "data-value": fmt(values[i]) }, fmt(values[i])),
      ]);
    });
    return chart;
  }

  function lineChart(title, times, series, threshold) {
    const width = 420;
    const height = 170;
    const left = 44;
    const bottom = 24;
    const all = series.flatMap((s) => s.values).filter((v) => typeof v === "number");
    if (typeof threshold === "number") all.push(threshold);
    const low = Math.min(0, ...all);
    const high = Math.max(...all, low + 1e-12);
    const x = (i) => left + (times.length < 2 ? (width - left - 10) / 2 : (i * (width - left - 10)) / (times.length - 1));
    const y = (v) => height - bottom - ((v - low) / (high - low)) * (height - bottom - 22);
    const chart = svg("svg", { class: "chart", width: width, height: height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    add(chart, [
      svg("text", { x: 8, y: 14 }, title),
      svg("line", { x1: left, y1: y(low), x2: width - 10, y2: y(low), stroke: "#d0d7de" }),
      svg("text", { x: 4, y: y(high) + 4 }, fmt(high)),
      svg("text", { x: 4, y: y(low) }, fmt(low)),
    ]);
    if (times.length) {
      add(chart, [
        svg("text", { x: left, y: height - 6 }, when(times[0]).slice(0, 10)),
        svg("text", { x: width - 90, y: height - 6 }, when(times[times.length - 1]).slice(0, 10)),
      ]);
    }
    if (typeof threshold === "number") {
      add(chart, [svg("line", { x1: left, y1: y(threshold), x2: width - 10, y2: y(threshold), stroke: "#cf222e", "stroke-dasharray": "4 3" })]);
    }
    series.forEach((s, k) => {
      const color = COLORS[k % COLORS.length];
      const points = s.values.map((v, i) => (typeof v === "number" ? `${x(i)},${y(v)}` : null)).filter((p) => p);
      if (points.length > 1) add(chart, [svg("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 2 })]);
      s.values.forEach((v, i) => {
        if (typeof v === "number") add(chart, [svg("circle", { cx: x(i), cy: y(v), r: 3, fill: s.flags && s.flags[i] ? "#cf222e" : color })]);
      });
    });
    return chart;
  }

  // A numeric column's distribution from its stored statistics: the bins run between the minimum, the quantiles
  // p01 … p99 and the maximum, so each holds a known share of the rows (1%, 4%, 20%, 25%, 25%, 20%, 4%, 1%);
  // a bar's height is that share over its drawn width (a density), so a narrow bin holding many rows stands tall.
  const QUANTILE_SHARES = [
    ["min", "p01", 0.01],
    ["p01", "p05", 0.04],
    ["p05", "p25", 0.2],
    ["p25", "p50", 0.25],
    ["p50", "p75", 0.25],
    ["p75", "p95", 0.2],
    ["p95", "p99", 0.04],
    ["p99", "max", 0.01],
  ];

  function histogram(title, stats) {
    const q = Object.assign({ min: stats.min, max: stats.max }, stats.quantiles || {});
    if (!QUANTILE_SHARES.every(([lo, hi]) => typeof q[lo] === "number" && typeof q[hi] === "number")) return null;
    const width = 300;
    const height = 140;
    const left = 8;
    const span = q.max - q.min || 1;
    const x = (v) => left + ((v - q.min) / span) * (width - 2 * left);
    const bins = QUANTILE_SHARES.map(([lo, hi, share]) => {
      const x0 = x(q[lo]);
      const w = Math.max(x(q[hi]) - x0, 2);
      return { x0: x0, w: w, share: share, density: share / w };
    });
    const top = Math.max(...bins.map((b) => b.density));
    const chart = svg("svg", { class: "chart histogram", width: width, height: height, viewBox: `0 0 ${width} ${height}`, role: "img", "data-column": title });
    add(chart, [svg("text", { x: left, y: 14 }, title)]);
    for (const b of bins) {
      const h = (b.density / top) * (height - 44);
      add(chart, [svg("rect", { x: b.x0, y: height - 22 - h, width: b.w, height: h, fill: COLORS[0], "fill-opacity": 0.75, "data-share": b.share })]);
    }
    add(chart, [
      svg("line", { x1: left, y1: height - 22, x2: width - left, y2: height - 22, stroke: "#d0d7de" }),
      svg("text", { x: left, y: height - 6 }, fmt(q.min)),
      svg("text", { x: width - left - 60, y: height - 6 }, fmt(q.max)),
    ]);
    return chart;
  }

  // Links to the previous and next page of a paged answer, keeping the rest of the URL's query.
  function pager(data, noun, param) {
    const key = param || "page";
    const pageLink = (n, label) => {
      const next = new URLSearchParams(query);
      next.set(key, String(n));
      return el("a", { href: "?" + next.toString(), rel: label, "data-pager": key }, label);
    };
    return el(
      "div",
      { class: "pager" },
      data.page > 1 ? pageLink(data.page - 1, "prev") : null,
      el("span", { class: "page-info" }, `page ${data.page} of ${data.pages} · ${data.total} ${noun}`),
      data.page < data.pages ? pageLink(data.page + 1, "next") : null
    );
  }

  function pageArgs(param) {
    const n = parseInt(query.get(param || "page") || "1", 10);
    return `page=${Number.isFinite(n) && n > 0 ? n : 1}`;
  }

  // -- pages -----------------------------------------------------------------------------------------------------
  const pages = {};

  pages.overview = async function () {
    const data = await api("/api/overview");
    render(
      el("h2", {}, "Feature views"),
      data.views.views.length
        ? table(
            ["View", "Versions", "Rows (latest)", "Latest ingested"],
            data.views.views.map((v) => [link(path("views", v.name), v.name), v.versions, v.latest ? v.latest.row_count : null, v.latest ? when(v.latest.created_at) : "—"])
          )
        : el("p", { class: "muted" }, "No feature views yet."),
      data.views.total > data.views.views.length ? el("p", {}, link("/views", `All ${data.views.total} views`)) : null,
      el("h2", {}, "Models"),
      modelsTable(data.models.models),
      data.models.total > data.models.models.length ? el("p", {}, link("/models", `All ${data.models.total} models`)) : null,
      el("h2", {}, "Latest monitoring verdicts"),
      data.verdicts.length
        ? table(
            ["Model", "Version", "Checked", "Verdict", "Reasons"],
            data.verdicts.map((r) => [link(path("monitoring", r.model), r.model), r.version, when(r.created_at), verdict(r.crossed), r.reasons.join("; ")])
          )
        : el("p", { class: "muted" }, "No monitoring reports yet."),
      el("h2", {}, "Recent retraining decisions"),
      data.decisions.length
        ? table(["When", "Model", "Decision", "Version", "Why"], data.decisions.map((e) => [when(e.at), link(path("monitoring", e.model), e.model), e.kind, e.version, e.message]))
        : el("p", { class: "muted" }, "No retraining decisions yet.")
    );
  };

  function verdict(crossed) {
    return crossed ? el("span", { class: "bad" }, "threshold crossed") : el("span", { class: "good" }, "ok");
  }

  function modelsTable(models) {
    if (!models.length) return el("p", { class: "muted" }, "No registered models yet.");
    return table(
      ["Model", "Versions", "Latest", "Aliases", "Registered", ""],
      models.map((m) => [
        link(path("models", m.name), m.name),
        m.versions,
        m.latest,
        tags(Object.entries(m.aliases).map(([a, v]) => `${a} → v${v}`)),
        when(m.updated_at),
        link(path("monitoring", m.name), "monitoring"),
      ])
    );
  }

  pages.views = async function () {
    const data = await api("/api/views?" + pageArgs());
    const views = data.views;
    render(
      views.length
        ? table(
            ["View", "Description", "Entities", "Features", "Versions", "Rows (latest)", "Event times (latest)"],
            views.map((v) => [
              link(path("views", v.name), v.name),
              v.description,
              v.entities.join(", "),
              v.features.join(", "),
              v.versions,
              v.latest ? v.latest.row_count : null,
              v.latest ? `${when(v.latest.event_time_min)} … ${when(v.latest.event_time_max)}` : "—",
            ])
          )
        : el("p", { class: "muted" }, "No feature views yet: `keel apply` registers them."),
      pager(data, "views")
    );
  };

  pages.view = async function () {
    const params = new URLSearchParams();
    params.set("page", pageArgs().slice(5));
    if (query.get("version")) params.set("version", query.get("version"));
    const v = await api("/api/views/" + encodeURIComponent(args.name) + "?" + params.toString());
    const stats = Object.entries(v.statistics || {});
    const validation = v.validation;
    const statsLink = (version) => {
      const next = new URLSearchParams(query);
      next.set("version", String(version));
      return el("a", { href: "?" + next.toString() + "#statistics", "data-version": version }, "v" + version);
    };
    const shown = v.statistics_version === null ? "" : ` (version ${v.statistics_version})`;
    render(
      facts([
        ["Description", v.description || "—"],
        ["Entities", v.entities.join(", ")],
        ["TTL (seconds)", v.ttl_seconds],
        ["Tags", tags(Object.entries(v.tags).map(([k, val]) => `${k}=${val}`))],
        ["Source", v.source ? tags(Object.entries(v.source).map(([k, val]) => `${k}=${typeof val === "string" ? val : JSON.stringify(val)}`)) : "—"],
      ]),
      el("h2", {}, "Schema"),
      table(["Feature", "Type", "Description"], v.schema.map((f) => [f.name, f.dtype, f.description || ""])),
      el("h2", {}, "Versions"),
      v.versions.length
        ? table(
            ["Version", "Rows", "Event time from", "to", "Data digest", "Ingested", "Definition"],
            v.versions.map((x) => [statsLink(x.version), x.row_count, when(x.event_time_min), when(x.event_time_max), el("code", {}, x.data_digest.slice(0, 12)), when(x.created_at), x.definition_version]),
            { id: "view-versions" }
          )
        : el("p", { class: "muted" }, "Not ingested yet."),
      v.total > v.versions.length ? pager(v, "versions") : null,
      el("h2", { id: "statistics" }, "Statistics" + shown),
      stats.length
        ? table(
            ["Column", "Type", "Count", "Nulls", "Min", "Max", "Mean", "Std", "Median", "Distinct / top"],
            stats.map(([name, s]) => [
              name,
              s.dtype,
              s.count,
              s.nulls,
              s.min,
              s.max,
              s.mean,
              s.std,
              s.quantiles ? s.quantiles.p50 : null,
              s.top ? s.top.slice(0, 5).map(([value, n]) => `${value} (${n})`).join(", ") : s.distinct,
            ])
          )
        : el("p", { class: "muted" }, "No statistics."),
      stats.length
        ? el(
            "div",
            { class: "charts", id: "histograms" },
            ...stats.map(([name, s]) =>
              s.top && s.top.length
                ? barChart(name, s.top.slice(0, 8).map(([value]) => String(value).slice(0, 12)), s.top.slice(0, 8).map(([, n]) => n))
                : histogram(name, s)
            )
          )
        : null,
      el("h2", {}, "Validation" + shown),
      validation ? validationTable(validation) : el("p", { class: "muted" }, "No expectations were checked."),
      el("h2", {}, "Lineage: runs and models trained on this view"),
      v.lineage.length
        ? table(
            ["Run", "Spec", "Status", "Started", "View version", "Models"],
            v.lineage.map((r) => [
              link(path("runs", r.id), r.id.slice(0, 12)),
              r.spec,
              r.status,
              when(r.started_at),
              r.feature_version,
              el("span", {}, ...r.models.map((m) => {
                const cut = m.lastIndexOf(":");
                return el("a", { href: path("models", m.slice(0, cut)), class: "tag" }, m);
              })),
            ]),
            { id: "lineage" }
          )
        : el("p", { class: "muted" }, "No run used this view yet.")
    );
  };

  function validationTable(validation) {
    const results = Array.isArray(validation.results) ? validation.results : [];
    const keys = [...new Set(results.flatMap((r) => Object.keys(r)))];
    return el("div", {}, facts([["Policy", validation.policy]]), results.length ? table(keys, results.map((r) => keys.map((k) => r[k]))) : el("p", { class: "muted" }, "No results."));
  }

  pages.runs = async function () {
    // The page's "where" box holds conditions separated by ";"; the API takes each as its own where=.
    const params = new URLSearchParams(query);
    params.delete("where");
    for (const condition of (query.get("where") || "").split(";").map((c) => c.trim()).filter((c) => c)) params.append("where", condition);
    const data = await api("/api/runs?" + params.toString());
    const sort = data.sort;
    const order = data.order;
    const sortLink = (key, label) => {
      const next = new URLSearchParams(query);
      next.set("sort", key);
      next.set("order", sort === key && order === "desc" ? "asc" : "desc");
      next.delete("page");
      const arrow = sort === key ? (order === "desc" ? " ▼" : " ▲") : "";
      return el("a", { href: "/runs?" + next.toString(), "data-sort": key }, label + arrow);
    };
    const metrics = data.facets.metrics;
    const option = (value, selected) => el("option", { value: value, selected: value === selected }, value || "any");
    const filter = el(
      "form",
      { class: "inline", method: "get", action: "/runs", id: "run-filter" },
      el("label", {}, "Search", el("input", { name: "q", value: query.get("q") || "", placeholder: "id, spec or parameter", type: "search" })),
      el("label", {}, "Status", el("select", { name: "status" }, ...["", ...data.facets.statuses].map((s) => option(s, query.get("status") || "")))),
      el("label", {}, "Spec", el("select", { name: "spec" }, ...["", ...data.facets.specs].map((s) => option(s, query.get("spec") || "")))),
      el("label", {}, "Where", el("input", { name: "where", value: query.get("where") || "", placeholder: "metric.roc_auc>=0.8; param.estimator.C=1", size: 36 })),
      el("input", { type: "hidden", name: "sort", value: sort }),
      el("input", { type: "hidden", name: "order", value: order }),
      el("button", { type: "submit" }, "Filter")
    );
    const head = el(
      "tr",
      {},
      el("th", {}, ""),
      el("th", {}, "Run"),
      el("th", {}, sortLink("spec", "Spec")),
      el("th", {}, sortLink("status", "Status")),
      el("th", {}, sortLink("started_at", "Started")),
      ...metrics.map((m) => el("th", {}, sortLink("metric." + m, m)))
    );
    const rows = data.runs.map((r) =>
      el(
        "tr",
        { "data-run": r.id },
        el("td", {}, el("input", { type: "checkbox", class: "pick", value: r.id, "aria-label": "compare " + r.id })),
        el("td", {}, link(path("runs", r.id), r.id.slice(0, 12))),
        el("td", {}, r.spec),
        el("td", {}, r.status),
        el("td", {}, when(r.started_at)),
        ...metrics.map((m) => cell(r.metrics[m]))
      )
    );
    const compare = el("button", { type: "button", id: "compare-selected", class: "secondary" }, "Compare selected");
    compare.addEventListener("click", () => {
      const picked = [...app.querySelectorAll("input.pick:checked")].map((c) => c.value);
      if (picked.length) window.location.href = rooted("/compare?runs=") + picked.map(encodeURIComponent).join(",");
    });
    render(
      filter,
      el("table", { id: "runs-table" }, el("thead", {}, head), el("tbody", {}, ...rows)),
      data.runs.length ? null : el("p", { class: "muted" }, "No run matches."),
      add(pager(data, "runs"), [compare])
    );
  };

  pages.run = async function () {
    const r = await api("/api/runs/" + encodeURIComponent(args.id));
    const lineage = r.lineage || {};
    const nested = Object.entries(lineage).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v));
    const flat = Object.entries(lineage).filter(([, v]) => !(v && typeof v === "object" && !Array.isArray(v)));
    render(
      facts([
        ["Id", el("code", {}, r.id)],
        ["Spec", r.spec],
        ["Status", r.status],
        ["Started", when(r.started_at)],
        ["Finished", when(r.finished_at)],
        ["Package", r.package_digest ? el("code", {}, `${r.package_format} ${r.package_digest}`) : "—"],
        ["Error", r.error || "—"],
      ]),
      el("h2", {}, "Metrics"),
      mapTable(r.metrics, "Metric", "Value"),
      el("h2", {}, "Parameters"),
      mapTable(r.params, "Parameter", "Value"),
      el("h2", {}, "Durations (seconds)"),
      mapTable(r.durations, "Phase", "Seconds"),
      el("h2", {}, "Lineage"),
      flat.length ? table(["What", "Value"], flat.map(([k, v]) => [k, v])) : null,
      ...nested.flatMap(([k, v]) => [el("h2", {}, k), mapTable(v, "Name", "Value")])
    );
  };

  pages.compare = async function () {
    const ids = query.get("runs") || "";
    if (!ids) {
      render(el("p", {}, "Pick runs to compare on the ", link("/runs", "runs page"), "."));
      return;
    }
    const data = await api("/api/compare?runs=" + encodeURIComponent(ids));
    const labels = data.runs.map((r) => r.id.slice(0, 8));
    const header = ["", ...data.runs.map((r) => link(path("runs", r.id), r.id.slice(0, 8)))];
    render(
      table(["Run", ...labels], [["Spec", ...data.runs.map((r) => r.spec)], ["Status", ...data.runs.map((r) => r.status)], ["Started", ...data.runs.map((r) => when(r.started_at))]]),
      el("h2", {}, "Metrics"),
      table(
        header,
        data.metrics.map((m) => ({ cells: [m.name, ...m.values], attrs: { "data-metric": m.name } })),
        { id: "compare-metrics" }
      ),
      el("div", { class: "charts" }, ...data.metrics.filter((m) => m.values.some((v) => typeof v === "number")).map((m) => barChart(m.name, labels, m.values))),
      el("h2", {}, "Parameters"),
      el("p", { class: "muted" }, "Highlighted rows differ."),
      table(
        header,
        data.params.map((p) => ({ cells: [p.name, ...p.values], attrs: { class: p.differs ? "differs" : null, "data-param": p.name } })),
        { id: "compare-params" }
      )
    );
  };

  pages.models = async function () {
    const data = await api("/api/models?" + pageArgs());
    render(modelsTable(data.models), pager(data, "models"));
  };

  pages.model = async function (message) {
    const name = args.name;
    const m = await api("/api/models/" + encodeURIComponent(name));
    const analyses = query.get("apage") ? await api(`/api/models/${encodeURIComponent(name)}/analyses?${pageArgs("apage")}`) : { analyses: m.analyses, total: m.analyses_total, page: 1, page_size: m.analyses.length, pages: Math.max(1, Math.ceil(m.analyses_total / Math.max(m.analyses.length, 1))) };
    const versions = m.versions.map((v) => v.version);
    const metricNames = [...new Set(m.versions.flatMap((v) => Object.keys(v.metrics)))].sort();
    const a = query.get("a");
    const b = query.get("b");
    let diff = null;
    if (a && b) {
      try {
        diff = diffView(await api(`/api/models/${encodeURIComponent(name)}/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`));
      } catch (e) {
        diff = el("p", { class: "error" }, e.message);
      }
    }
    const select = (field, chosen) => el("select", { name: field }, ...versions.map((v) => el("option", { value: v, selected: String(v) === chosen }, "v" + v)));
    render(
      el("p", {}, link(path("monitoring", name), "Monitoring of this model")),
      el("h2", {}, "Aliases"),
      table(["Alias", "Version"], Object.entries(m.aliases).map(([alias, v]) => ({ cells: [alias, v], attrs: { "data-alias": alias } })), { id: "aliases" }),
      aliasForm(name, versions, message),
      el("h2", {}, `Versions (${m.version_count})`),
      table(
        ["Version", "Registered", "Run", "Aliases", "Description", "Tags", ...metricNames],
        m.versions.map((v) => [
          v.version,
          when(v.created_at),
          link(path("runs", v.run_id), v.run_id.slice(0, 12)),
          tags(v.aliases),
          v.description,
          tags(Object.entries(v.tags).map(([k, val]) => `${k}=${val}`)),
          ...metricNames.map((k) => v.metrics[k]),
        ]),
        { id: "versions" }
      ),
      el("h2", {}, "Compare two versions"),
      el("form", { class: "inline", method: "get", action: path("models", name), id: "diff-form" }, el("label", {}, "From", select("a", a)), el("label", {}, "To", select("b", b)), el("button", { type: "submit" }, "Diff")),
      diff,
      el("h2", {}, "Alias history"),
      m.alias_history.length
        ? table(["When", "Alias", "From", "To", "Reason"], m.alias_history.map((c) => [when(c.at), c.alias, c.from_version, c.to_version, c.reason]), { id: "alias-history" })
        : el("p", { class: "muted" }, "No alias moves yet."),
      el("h2", {}, "Analyses"),
      analyses.analyses.length
        ? table(
            ["When", "Version", "Kind", "Summary", "Report"],
            analyses.analyses.map((x) => [when(x.created_at), x.version, x.kind, JSON.stringify(x.summary).slice(0, 200), x.has_report ? link(path("models", name, "analyses", x.id, "report"), "report") : "—"])
          )
        : el("p", { class: "muted" }, "No analyses: `keel analyze` stores them."),
      analyses.total > analyses.analyses.length ? pager(analyses, "analyses", "apage") : null
    );
  };

  function diffView(d) {
    return el(
      "div",
      { id: "diff" },
      el("h3", {}, `v${d.a} → v${d.b}`),
      table(["Metric", "v" + d.a, "v" + d.b, "Δ"], d.metrics.map((x) => ({ cells: [x.name, x.a, x.b, x.delta], attrs: { "data-metric": x.name } }))),
      d.params.length ? table(["Parameter", "v" + d.a, "v" + d.b], d.params.map((x) => [x.name, x.a, x.b])) : el("p", { class: "muted" }, "Same parameters."),
      facts([
        ["Features added", d.features_added.join(", ") || "—"],
        ["Features removed", d.features_removed.join(", ") || "—"],
        ["Feature versions changed", JSON.stringify(d.feature_versions_changed)],
        ["Training set changed", d.training_set_changed ? "yes" : "no"],
        ["Libraries changed", JSON.stringify(d.libraries)],
      ])
    );
  }

  function aliasForm(name, versions, message) {
    const token = el("input", { type: "password", name: "token", id: "token", autocomplete: "off", placeholder: "keel ui --token" });
    const alias = el("input", { name: "alias", id: "alias", value: "champion" });
    const version = el("select", { name: "version", id: "version" }, ...versions.map((v) => el("option", { value: v }, "v" + v)));
    const reason = el("input", { name: "reason", id: "reason", placeholder: "why (kept in the history)" });
    const result = el("div", { id: "action-result", role: "status" });
    if (message) add(result, [el("p", { class: message.ok ? "ok" : "error" }, message.text)]);
    const act = async (what) => {
      const target = alias.value.trim();
      const question = what === "promote" ? `Move alias "${target}" of model "${name}" to v${version.value}?` : `Roll back alias "${target}" of model "${name}" to its previous version?`;
      result.replaceChildren();
      if (!window.confirm(question)) return;
      const url = `/api/models/${encodeURIComponent(name)}/aliases/${encodeURIComponent(target)}` + (what === "rollback" ? "/rollback" : "");
      const body = what === "promote" ? { version: Number(version.value), reason: reason.value } : { reason: reason.value };
      let outcome;
      try {
        const change = await api(url, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-Keel-UI": "1", Authorization: "Bearer " + token.value },
          body: JSON.stringify(body),
        });
        outcome = { ok: true, text: `${change.alias}: v${change.from_version ?? "—"} → v${change.to_version ?? "—"}` };
      } catch (e) {
        outcome = { ok: false, text: `Refused (${e.status || "error"}): ${e.message}` };
      }
      await pages.model(outcome);
    };
    return el(
      "form",
      { class: "inline", id: "alias-form", onsubmit: (e) => { e.preventDefault(); act("promote"); } },
      el("label", {}, "Alias", alias),
      el("label", {}, "Version", version),
      el("label", {}, "Reason", reason),
      el("label", {}, "Token", token),
      el("button", { type: "submit", id: "promote" }, "Promote"),
      el("button", { type: "button", id: "rollback", class: "secondary", onclick: () => act("rollback") }, "Roll back"),
      result
    );
  }

  pages.monitoring = async function () {
    const data = await api("/api/monitoring/" + encodeURIComponent(args.name));
    const times = data.reports.map((r) => r.created_at);
    const features = [...new Set(data.reports.flatMap((r) => Object.keys(r.drift)))].sort();
    const charts = features.map((f) => {
      const points = data.reports.map((r) => r.drift[f]);
      const threshold = points.find((p) => p && typeof p.threshold === "number");
      const method = points.find((p) => p) || {};
      return lineChart(`${f} (${method.method || "drift"})`, times, [{ values: points.map((p) => (p ? p.statistic : null)), flags: points.map((p) => p && p.drifted) }], threshold ? threshold.threshold : null);
    });
    // Data quality per column over time: the share missing (against the reference's, dashed), out of range and
    // in categories the reference never saw.
    const columns = [...new Set(data.reports.flatMap((r) => Object.keys(r.quality || {})))].sort();
    const qualityCharts = columns.map((c) => {
      const points = data.reports.map((r) => (r.quality || {})[c] || {});
      const series = [{ name: "missing", values: points.map((p) => p.missing_rate ?? null) }];
      if (points.some((p) => typeof p.out_of_range_share === "number")) series.push({ name: "out of range", values: points.map((p) => p.out_of_range_share ?? null) });
      if (points.some((p) => p.new_category_share)) series.push({ name: "new categories", values: points.map((p) => p.new_category_share ?? null) });
      const reference = points.find((p) => typeof p.reference_missing_rate === "number");
      const chart = lineChart(`${c}: ${series.map((x) => x.name).join(" · ")}`, times, series, reference ? reference.reference_missing_rate : null);
      chart.setAttribute("data-column", c);
      return chart;
    });
    render(
      el("p", {}, link(path("models", args.name), "Model page")),
      el("h2", {}, "Drift over time"),
      charts.length ? el("div", { class: "charts", id: "drift-charts" }, ...charts) : el("p", { class: "muted" }, "No drift measured yet."),
      el("h2", {}, "Data quality over time"),
      qualityCharts.length ? el("div", { class: "charts", id: "quality-charts" }, ...qualityCharts) : el("p", { class: "muted" }, "No data quality measured yet."),
      el("h2", {}, "Reports"),
      data.reports.length
        ? table(
            ["Checked", "Version", "Window", "Verdict", "Drift share", "Reasons", "Quality issues"],
            data.reports.slice().reverse().map((r) => [when(r.created_at), r.version, `${when(r.window_start)} … ${when(r.window_end)}`, verdict(r.crossed), r.drift_share, r.reasons.join("; "), r.quality_issues.join("; ")])
          )
        : el("p", { class: "muted" }, "No monitoring reports yet: `keel monitor` stores them."),
      el("h2", {}, "Retraining audit"),
      data.events.length
        ? table(["When", "Event", "Version", "Report", "Message"], data.events.map((e) => [when(e.at), e.kind, e.version, e.report_id ? e.report_id.slice(0, 8) : "—", e.message]), { id: "events" })
        : el("p", { class: "muted" }, "No events yet.")
    );
  };

  const builder = pages[args.page];
  if (builder) {
    builder().catch((e) => render(el("p", { class: "error" }, e.message || String(e))));
  }
})();

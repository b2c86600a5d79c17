// A key's usage over time, by outcome (GET /v1/api-keys/<id>/usage): stacked bars drawn as inline
// SVG (no library), a legend, and the same numbers as a table for screen readers and keyboards; the
// LLM gateway's calls by model in a table of their own (modelTable, shared with the account page).

import { api } from "./api.js";
import { describeError, h, loading, uniqueId } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
// Outcomes in the verifier's order; the index picks the colour class (css: .outcome-N).
const OUTCOMES = ["VALID", "RATE_LIMITED", "QUOTA_EXCEEDED", "BUDGET_EXCEEDED", "INSUFFICIENT_SCOPES", "FORBIDDEN",
  "EXPIRED", "SUSPENDED", "REVOKED", "NOT_FOUND"];
const OUTCOME_WORDS = {
  VALID: "Valid", RATE_LIMITED: "Rate limited", QUOTA_EXCEEDED: "Quota exceeded", BUDGET_EXCEEDED: "Budget exceeded",
  INSUFFICIENT_SCOPES: "Insufficient scopes", FORBIDDEN: "IP not allowed", EXPIRED: "Expired", SUSPENDED: "Suspended",
  REVOKED: "Revoked", NOT_FOUND: "Not found",
};
const COLOURS = 8; // .outcome-0 to .outcome-7
const RANGES = [
  { value: "24h", label: "Last 24 hours", span: DAY_MS, groupBy: "hour" },
  { value: "7d", label: "Last 7 days", span: 7 * DAY_MS, groupBy: "day" },
  { value: "30d", label: "Last 30 days", span: 30 * DAY_MS, groupBy: "day" },
];
// The drawing is as wide as its box when drawn (one unit, one CSS pixel: text keeps its size at
// 375 px and on a desktop); it scales with the box after that (CSS width: 100%).
const DEFAULT_WIDTH = 640;
const MIN_WIDTH = 280;
const HEIGHT = 240;
const MARGIN = { top: 12, right: 12, bottom: 28, left: 44 };

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

const words = (outcome) => OUTCOME_WORDS[outcome] || outcome.toLowerCase().replace(/_/g, " ");
const colourOf = (outcome, order) => `outcome-${order.indexOf(outcome) % COLOURS}`;

/** Every bucket of the window, oldest first, with the API's points filled in (zeros elsewhere). */
function buckets(attributes) {
  const step = attributes.granularity === "day" ? DAY_MS : HOUR_MS;
  const start = Math.floor(Date.parse(attributes.from) / step) * step; // buckets start on UTC hours and days
  const end = Date.parse(attributes.to);
  const byTime = new Map(attributes.series.map((point) => [Date.parse(point.time), point]));
  const all = [];
  for (let time = start; time < end; time += step) {
    const point = byTime.get(time);
    all.push({ time, total: point ? point.total : 0, cost: point ? point.cost : 0, outcomes: point ? point.outcomes : {} });
  }
  return all;
}

/** A round upper bound for the y axis (1, 2, 5, 10, 20, 50...). */
function niceMax(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * magnitude).find((candidate) => candidate >= value);
}

function bucketLabel(time, granularity, style) {
  // Days are UTC days (the API's buckets); hours are shown in the viewer's time zone.
  const options = granularity === "day"
    ? { month: "short", day: "numeric", timeZone: "UTC" }
    : style === "axis" ? { hour: "2-digit", minute: "2-digit" } : { dateStyle: "medium", timeStyle: "short" };
  return new Intl.DateTimeFormat(undefined, options).format(new Date(time));
}

function drawChart(all, order, granularity, titleText, width) {
  const titleId = uniqueId("chart-title");
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const top = niceMax(Math.max(0, ...all.map((bucket) => bucket.total)));
  const slot = plotWidth / Math.max(1, all.length);
  const barWidth = Math.max(1, slot * 0.8);
  const y = (value) => MARGIN.top + plotHeight - (value / top) * plotHeight;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-labelledby": titleId,
    "data-chart": "usage" }, svg("title", { id: titleId }, titleText));
  for (const tick of [0, top / 2, top]) {
    chart.append(svg("line", { class: tick ? "grid" : "axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(tick), y2: y(tick) }),
      svg("text", { x: MARGIN.left - 6, y: y(tick) + 4, "text-anchor": "end" }, Number.isInteger(tick) ? tick : tick.toFixed(1)));
  }
  const labels = Math.max(2, Math.floor(plotWidth / 90)); // about one label per 90 px, whatever the span
  const labelEvery = Math.max(1, Math.ceil(all.length / labels));
  all.forEach((bucket, index) => {
    const x = MARGIN.left + index * slot + (slot - barWidth) / 2;
    let base = 0;
    for (const outcome of order) {
      const count = bucket.outcomes[outcome] || 0;
      if (!count) continue;
      chart.append(svg("rect", { class: colourOf(outcome, order), x, width: barWidth, y: y(base + count),
        height: Math.max(0.5, y(base) - y(base + count)), "data-outcome": outcome },
      svg("title", {}, `${bucketLabel(bucket.time, granularity, "full")}: ${count} ${words(outcome).toLowerCase()}`)));
      base += count;
    }
    if (index % labelEvery === 0) {
      chart.append(svg("text", { x: x + barWidth / 2, y: HEIGHT - 8, "text-anchor": "middle" },
        bucketLabel(bucket.time, granularity, "axis")));
    }
  });
  return chart;
}

function legend(order, totals) {
  return h("ul", { class: "legend", "aria-label": "Legend" }, order.map((outcome) => h("li", null,
    h("span", { class: `swatch ${colourOf(outcome, order)}`, "aria-hidden": "true" }), `${words(outcome)}: ${totals[outcome] || 0}`)));
}

function table(all, order, granularity) {
  const used = all.filter((bucket) => bucket.total > 0);
  if (!used.length) return null;
  return h("details", null, h("summary", null, "Show the numbers as a table"),
    h("div", { class: "table-wrap" }, h("table", { "data-usage-table": "" },
      h("caption", { class: "visually-hidden" }, `Verifications per ${granularity}, by outcome (periods without any are left out)`),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, granularity === "day" ? "Day (UTC)" : "Hour"),
        order.map((outcome) => h("th", { scope: "col", class: "number" }, words(outcome))),
        h("th", { scope: "col", class: "number" }, "Total"), h("th", { scope: "col", class: "number" }, "Cost"))),
      h("tbody", null, used.map((bucket) => h("tr", null,
        h("th", { scope: "row" }, bucketLabel(bucket.time, granularity, "full")),
        order.map((outcome) => h("td", { class: "number" }, bucket.outcomes[outcome] || 0)),
        h("td", { class: "number", "data-column": "total" }, bucket.total), h("td", { class: "number", "data-column": "cost" }, bucket.cost)))))));
}

const MODEL_COLUMNS = [["requests", "Requests"], ["input-tokens", "Input tokens"], ["output-tokens", "Output tokens"], ["cost", "Cost"]];

/** The LLM gateway's calls in a key's series, summed by model: {model: {requests, cost, ...}}. */
function modelTotals(series) {
  const byModel = {};
  for (const point of series) {
    for (const [model, totals] of Object.entries(point.models || {})) {
      if (!byModel[model]) byModel[model] = Object.fromEntries(MODEL_COLUMNS.map(([name]) => [name, 0]));
      for (const [name] of MODEL_COLUMNS) byModel[model][name] += totals[name] || 0;
    }
  }
  return byModel;
}

/** A table of the LLM gateway's calls by model (model, requests, input and output tokens, cost);
 * `byModel` is shaped as GET /v1/usage's by-model: {"openai/gpt-4o": {requests, "input-tokens",
 * "output-tokens", cost}}. Null when there were none. With `hiddenCaption`, the caption is for
 * screen readers only (under a heading that says the same). Shared by a key's usage and the
 * account's summary. */
export function modelTable(byModel, { hiddenCaption = false } = {}) {
  const models = Object.keys(byModel || {}).sort();
  if (!models.length) return null;
  return h("div", { class: "table-wrap" }, h("table", { "data-model-table": "" },
    h("caption", { class: hiddenCaption ? "visually-hidden" : null }, "LLM gateway calls by model"),
    h("thead", null, h("tr", null, h("th", { scope: "col" }, "Model"),
      MODEL_COLUMNS.map(([, label]) => h("th", { scope: "col", class: "number" }, label)))),
    h("tbody", null, models.map((model) => h("tr", { "data-model": model },
      h("th", { scope: "row" }, model),
      MODEL_COLUMNS.map(([name]) => h("td", { class: "number", "data-column": name },
        Number(byModel[model][name] || 0).toLocaleString())))))));
}

/** Draw the usage of `document`'s key (its attributes: from, to, granularity, totals, series). */
function drawUsage(target, attributes) {
  const totals = attributes.totals || {};
  const seen = Object.keys(totals);
  // Known outcomes first, in the verifier's order, then any the console does not know yet.
  const order = [...OUTCOMES.filter((outcome) => seen.includes(outcome)), ...seen.filter((outcome) => !OUTCOMES.includes(outcome))];
  const all = buckets(attributes);
  const sum = Object.values(totals).reduce((a, b) => a + b, 0);
  const summary = sum
    ? `${sum} verification${sum === 1 ? "" : "s"}: ${order.map((outcome) => `${totals[outcome]} ${words(outcome).toLowerCase()}`).join(", ")}.`
    : "No verifications in this period.";
  const width = Math.max(MIN_WIDTH, Math.floor(target.clientWidth) || DEFAULT_WIDTH);
  target.replaceChildren(...[
    drawChart(all, order, attributes.granularity, `Verifications per ${attributes.granularity}, by outcome. ${summary}`, width),
    sum ? legend(order, totals) : h("p", { class: "empty" }, summary),
    table(all, order, attributes.granularity),
    modelTable(modelTotals(attributes.series)),
  ].filter(Boolean));
}

/** The usage section of a key's page: period and granularity controls, the chart, the table. */
export function usageSection(keyId) {
  const target = h("div", { "data-usage": "" });
  const rangeId = uniqueId("usage-range");
  const groupId = uniqueId("usage-group");
  const range = h("select", { id: rangeId, name: "range" }, RANGES.map((r) => h("option", { value: r.value }, r.label)));
  const groupBy = h("select", { id: groupId, name: "group-by" },
    h("option", { value: "hour" }, "Hour"), h("option", { value: "day" }, "Day"));
  const load = async () => {
    const chosen = RANGES.find((r) => r.value === range.value);
    const to = new Date();
    target.setAttribute("aria-busy", "true");
    loading(target, "Loading usage…");
    try {
      const document = await api.get(`/api-keys/${encodeURIComponent(keyId)}/usage`, {
        "filter[from]": new Date(to.getTime() - chosen.span).toISOString(), "filter[to]": to.toISOString(), "group-by": groupBy.value,
      });
      drawUsage(target, document.data.attributes);
    } catch (error) {
      target.replaceChildren(h("div", { class: "form-errors", role: "alert" }, h("p", null, describeError(error))));
    } finally {
      target.removeAttribute("aria-busy");
    }
  };
  range.addEventListener("change", () => {
    groupBy.value = RANGES.find((r) => r.value === range.value).groupBy; // a sensible default per span
    load();
  });
  groupBy.addEventListener("change", load);
  const section = h("section", { class: "card", "aria-labelledby": "usage-heading" },
    h("h2", { id: "usage-heading" }, "Usage"),
    h("div", { class: "chart-controls" },
      h("div", { class: "field" }, h("label", { for: rangeId }, "Period"), range),
      h("div", { class: "field" }, h("label", { for: groupId }, "Group by"), groupBy),
      h("button", { type: "button", onclick: load, "data-action": "refresh-usage" }, "Refresh")),
    target);
  load();
  return section;
}

// The Bondledger dashboard. It holds no data of its own: it signs in with an
// access token kept in this tab's session and reads the API like any client.

const TOKEN_KEY = "bondledger.token";
const view = document.getElementById("view");

// ---- small helpers ---------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function table(id, headers, rows) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, headers.map(([label, num]) => h("th", { class: num ? "num" : null }, label)))),
    h("tbody", {}, rows));
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text);
}

function num(text) {
  const n = Number(text);
  return Number.isFinite(n) ? n : 0;
}

function show(el, visible) { el.hidden = !visible; }

// ---- the token and the API ---------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY); }

let inFlight = 0;
function busy(delta) {
  inFlight += delta;
  show(document.getElementById("progress"), inFlight > 0);
  show(document.getElementById("busy"), inFlight > 0);
  document.body.dataset.busy = inFlight > 0 ? "true" : "false";
}

class ApiFailure extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const url = `/api/v1/${path}${query.toString() ? `?${query}` : ""}`;
  busy(1);
  try {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      if (response.status === 401) signOut("令牌无效 The token was not accepted.");
      throw new ApiFailure(response.status, body?.message || `HTTP ${response.status}`);
    }
    showStaleness(response.headers);
    return { body, next: response.headers.get("x-next-after") };
  } finally {
    busy(-1);
  }
}

// Where the last answer was read: a replica says how far behind the primary
// it was (Bondledger-Replica-Lag), a read around it says why.
function showStaleness(headers) {
  const el = document.getElementById("staleness");
  const from = headers.get("bondledger-read-from");
  if (!from) { show(el, false); return; }
  const lag = Object.fromEntries((headers.get("bondledger-replica-lag") || "")
    .split(";").map((part) => part.trim().split("=")).filter((pair) => pair.length === 2));
  const warning = headers.get("bondledger-warning");
  if (from === "replica") {
    const events = Number(lag.events || 0);
    el.textContent = events > 0
      ? `副本 Replica: 落后 ${events} 个事件 ${events} events, ${Number(lag.seconds || 0).toFixed(1)} s behind`
      : "副本 Replica: 最新 up to date";
    el.dataset.stale = events > 0 ? "true" : "false";
  } else {
    el.textContent = "主库 Primary";
    el.dataset.stale = "false";
  }
  el.title = warning || "";
  show(el, true);
}

function failed(error) {
  const el = document.getElementById("error");
  el.textContent = `出错 Error: ${error.message}`;
  show(el, true);
}

// ---- sign-in -----------------------------------------------------------------

function takeTokenFromAddress() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + (url.search === "?" ? "" : url.search) + url.hash);
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopLive();
  show(view, false);
  show(document.getElementById("nav"), false);
  show(document.getElementById("signout"), false);
  show(document.getElementById("signin"), true);
  const error = document.getElementById("signin-error");
  error.textContent = message || "";
  show(error, Boolean(message));
}

function signedIn() {
  show(document.getElementById("signin"), false);
  show(document.getElementById("nav"), true);
  show(document.getElementById("signout"), true);
  show(view, true);
  startLive();
  route();
}

document.getElementById("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  const value = input.value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  input.value = "";
  signedIn();
});
document.getElementById("signout").addEventListener("click", () => signOut());

// ---- routing -------------------------------------------------------------------

let current = null; // { name, refresh }

async function route() {
  if (!token()) return signOut();
  show(document.getElementById("error"), false);
  const hash = decodeURIComponent(window.location.hash.replace(/^#\/?/, ""));
  const [name, arg] = hash.split("/");
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.id === `nav-${name || "manuals"}`);
  }
  view.replaceChildren();
  chart?.destroy();
  chart = null;
  try {
    if (name === "manual" && arg) current = await manualView(arg);
    else if (name === "timeline") current = await timelineView();
    else if (name === "deadlines") current = await deadlinesView();
    else current = await manualsView();
  } catch (error) {
    failed(error);
  }
}
window.addEventListener("hashchange", route);

// ---- the manuals -----------------------------------------------------------------

async function manualsView() {
  const section = h("div", { id: "manuals-view" }, h("h2", {}, "手册 Manuals"));
  view.append(section);
  const render = async () => {
    const { body } = await api("manuals");
    const rows = body.map((m) => h("tr", { "data-manual": m.manual },
      h("td", {}, h("a", { href: `#/manual/${encodeURIComponent(m.manual)}` }, m.manual)),
      h("td", {}, m.trade_mode === "consigned" ? "来料加工 consigned" : m.trade_mode === "purchased" ? "进料加工 purchased" : m.trade_mode),
      h("td", {}, m.book === "account_book" ? "电子账册 account book" : "手册 manual", m.zone ? " · 区内 zone" : ""),
      h("td", {}, m.enterprise, m.processing_enterprise !== m.enterprise ? ` / ${m.processing_enterprise}` : ""),
      h("td", {}, m.valid_until),
      h("td", {}, badge(m.status, m.closed ? "closed" : m.status)),
      h("td", { class: "num" }, m.findings > 0 ? badge(String(m.findings), "error") : "0"),
      h("td", { class: "num" }, m.version)));
    section.replaceChildren(h("h2", {}, "手册 Manuals"),
      rows.length ? table("manuals", [["手册号 Manual"], ["贸易方式 Trade mode"], ["类型 Kind"], ["企业 Enterprise"], ["有效期 Valid until"],
        ["状态 Status"], ["发现 Findings", true], ["事件 Events", true]], rows)
        : h("p", { class: "muted" }, "没有手册 No manuals yet."));
  };
  await render();
  return { name: "manuals", refresh: render };
}

// ---- one manual --------------------------------------------------------------------

let chart = null;

function drawChart(canvas, materials) {
  if (!window.Chart) return;
  const labels = materials.map((m) => `${m.item} ${m.name}`);
  const data = {
    labels,
    datasets: [
      { label: "进口 Imported", data: materials.map((m) => num(m.imported) + num(m.carried_in) + num(m.remnant_in) + num(m.opening)), backgroundColor: "#2e90fa" },
      { label: "耗用 Consumed", data: materials.map((m) => num(m.consumed)), backgroundColor: "#f79009" },
      { label: "结余 Remaining", data: materials.map((m) => num(m.expected_remaining)), backgroundColor: "#12b76a" },
      { label: "外发 At contractors", data: materials.map((m) => num(m.at_contractors)), backgroundColor: "#9e77ed" },
    ],
  };
  if (chart) {
    chart.data = data;
    chart.update();
    return;
  }
  chart = new window.Chart(canvas, {
    type: "bar",
    data,
    options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } } },
  });
}

async function manualView(manual) {
  const { body: manuals } = await api("manuals");
  const summary = manuals.find((m) => m.manual === manual);
  if (!summary) throw new Error(`没有此手册 No manual ${manual}`);
  const state = { position: summary.version, date: "", latest: summary.version };

  const slider = h("input", { id: "as-of-version", type: "range", min: 1, max: summary.version, value: summary.version, step: 1 });
  const sliderLabel = h("span", { id: "as-of-label" });
  const date = h("input", { id: "as-of-date", type: "date" });
  const latest = h("button", { type: "button", id: "as-of-latest" }, "最新 Latest");
  const canvas = h("canvas", { id: "balance-chart" });
  const cards = h("div", { class: "grid", id: "manual-cards" });
  const balances = h("div", { id: "balances" });
  const findings = h("div", { id: "findings" });
  const workOrders = h("div", { id: "work-orders" });
  const historyBox = h("div", { id: "history" });
  const chain = h("p", { class: "chain", id: "carryover-chain" });

  view.append(h("div", { id: "manual-view", "data-manual": manual },
    h("h2", {}, `手册 Manual ${manual}`),
    cards,
    h("div", { class: "controls" },
      h("label", {}, h("span", {}, "版本 As of event ", sliderLabel), slider),
      h("label", {}, "日期 As of date", date),
      latest),
    h("section", {}, h("h3", {}, "结余 Balance"), h("div", { class: "chart-box" }, canvas), balances),
    h("section", {}, h("h3", {}, "核销报告 Verification findings"), findings, workOrders),
    h("section", {}, h("h3", {}, "结转链 Carry-over chain"), chain),
    h("section", {}, h("h3", {}, "历史 History"), historyBox)));

  const asOf = () => (state.date ? { as_of_date: state.date } : { as_of_position: state.position });

  const render = async () => {
    sliderLabel.textContent = state.date ? `— ${state.date}` : `${state.position} / ${state.latest}`;
    const [{ body: report }, { body: balance }] = await Promise.all([
      api(`manuals/${encodeURIComponent(manual)}/verification`, asOf()),
      api(`manuals/${encodeURIComponent(manual)}/balance`, asOf()),
    ]);
    const contractors = new Map(balance.materials.map((m) => [m.item, m.at_contractors]));
    const materials = report.materials.map((m) => ({ ...m, at_contractors: contractors.get(m.item) ?? m.at_contractors }));
    cards.replaceChildren(
      card("贸易方式 Trade mode", summary.trade_mode === "consigned" ? "来料加工 consigned" : "进料加工 purchased"),
      card("有效期 Valid until", summary.valid_until),
      card("企业 Enterprise", summary.enterprise),
      card("核销状态 Status", badge(report.status, report.status)),
      card("发现 Findings", String(report.findings.length)));
    drawChart(canvas, materials);
    balances.replaceChildren(table("balance-table",
      [["料号 Item"], ["HS"], ["品名 Name"], ["单位 Unit"], ["进口 Imported", true], ["耗用 Consumed", true],
        ["结余 Remaining", true], ["外发 At contractors", true], ["申报结余 Declared", true], ["状态 Status"]],
      materials.map((m) => h("tr", { "data-item": m.item },
        h("td", {}, m.item), h("td", {}, m.hs), h("td", {}, m.name), h("td", {}, m.unit),
        h("td", { class: "num" }, m.imported), h("td", { class: "num" }, m.consumed),
        h("td", { class: "num balance" }, m.expected_remaining), h("td", { class: "num" }, m.at_contractors),
        h("td", { class: "num" }, m.declared_remaining ?? "—"), h("td", {}, badge(m.status, m.status))))));
    findings.replaceChildren(report.findings.length
      ? table("findings-table", [["规则 Rule"], ["级别 Severity"], ["料号 Material"], ["事件 Event"], ["说明 Message"]],
        report.findings.map((f) => h("tr", {}, h("td", {}, f.rule), h("td", {}, badge(f.severity, f.severity)),
          h("td", {}, f.material ?? ""), h("td", {}, f.event ?? ""), h("td", {}, f.message))))
      : h("p", { class: "muted", id: "no-findings" }, "无发现 No findings."));
    workOrders.replaceChildren(report.work_orders.length
      ? table("work-orders-table", [["成品 Product"], ["料件 Material"], ["实际单耗 Actual", true], ["申报单耗 Declared", true], ["偏差 Deviation", true]],
        report.work_orders.map((w) => h("tr", {}, h("td", {}, w.product), h("td", {}, w.material),
          h("td", { class: "num" }, w.actual_unit_consumption), h("td", { class: "num" }, w.declared_unit_consumption ?? "—"),
          h("td", { class: "num" }, w.deviation ?? "—"))))
      : "");
    const { body: events } = await api(`manuals/${encodeURIComponent(manual)}/history`, { ...asOf(), limit: 1000 });
    historyBox.replaceChildren(table("history-table", [["#", true], ["日期 Date"], ["类型 Type"], ["编号 Id"], ["发现 Findings"]],
      events.map((e) => h("tr", { class: state.date || e.version <= state.position ? "" : "muted" },
        h("td", { class: "num" }, e.version), h("td", {}, e.date), h("td", {}, e.type), h("td", {}, e.id ?? ""),
        h("td", {}, (e.findings || []).map((f) => badge(f.rule, f.severity)))))));
  };

  const renderChain = async () => {
    const { body: events } = await api("timeline", { manual, follow_carryover: "true", limit: 1000 });
    const reached = [...new Set([manual, ...events.map((e) => e.manual)])];
    chain.replaceChildren(...reached.flatMap((m, i) => [i ? " → " : "",
      h("a", { href: `#/manual/${encodeURIComponent(m)}` }, m)]),
      reached.length === 1 ? h("span", { class: "muted" }, " 无结转 No carry-over out of this manual") : "");
  };

  let pending = null;
  slider.addEventListener("input", () => {
    state.position = Number(slider.value);
    state.date = "";
    date.value = "";
    clearTimeout(pending);
    pending = setTimeout(() => render().catch(failed), 120);
  });
  date.addEventListener("change", () => {
    state.date = date.value;
    render().catch(failed);
  });
  latest.addEventListener("click", () => {
    state.date = "";
    date.value = "";
    state.position = state.latest;
    slider.value = String(state.latest);
    render().catch(failed);
  });

  await Promise.all([render(), renderChain()]);
  return {
    name: "manual",
    refresh: async () => {
      const { body: fresh } = await api("manuals");
      const now = fresh.find((m) => m.manual === manual);
      if (!now || now.version === state.latest) return;
      const following = !state.date && state.position === state.latest;
      state.latest = now.version;
      slider.max = String(now.version);
      if (following) {
        state.position = now.version;
        slider.value = String(now.version);
      }
      await Promise.all([render(), renderChain()]);
    },
  };
}

function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "k" }, label), h("div", { class: "v" }, value));
}

// ---- the timeline --------------------------------------------------------------------

const FILTERS = [
  ["manual", "手册 Manual", "text"], ["enterprise", "企业 Enterprise", "text"], ["hs", "HS 前缀 HS prefix", "text"],
  ["declaration", "报关单 Declaration", "text"], ["counterparty", "对方 Counterparty", "text"],
  ["from", "自 From", "date"], ["to", "至 To", "date"],
];

async function timelineView() {
  const inputs = Object.fromEntries(FILTERS.map(([key, , type]) => [key, h("input", { id: `filter-${key}`, name: key, type })]));
  const follow = h("input", { id: "filter-follow", type: "checkbox" });
  const rows = h("tbody", {});
  const count = h("span", { id: "timeline-count", class: "muted" });
  const more = h("button", { type: "button", id: "timeline-more", hidden: true }, "更多 More");
  let next = null;

  const form = h("form", { id: "timeline-filters", class: "controls" },
    FILTERS.map(([key, label]) => h("label", {}, label, inputs[key])),
    h("label", {}, "沿结转链 Follow carry-over", follow),
    h("button", { type: "submit", id: "filter-apply" }, "筛选 Filter"));
  view.append(h("div", { id: "timeline-view" }, h("h2", {}, "时间线 Timeline"), form,
    h("p", {}, count),
    h("table", { id: "timeline" },
      h("thead", {}, h("tr", {}, ["位置 Position", "手册 Manual", "#", "日期 Date", "类型 Type", "项 Item", "数量 Qty", "对方 Counterparty", "发现 Findings"].map((t) => h("th", {}, t)))),
      rows),
    more));

  const params = () => {
    const p = Object.fromEntries(FILTERS.map(([key]) => [key, inputs[key].value.trim()]));
    if (follow.checked) p.follow_carryover = "true";
    return p;
  };
  const row = (e) => {
    const what = e.material !== undefined ? `料件 M${e.material}` : e.product !== undefined ? `成品 P${e.product}` : "";
    return h("tr", { "data-position": e.position },
      h("td", {}, e.position), h("td", {}, h("a", { href: `#/manual/${encodeURIComponent(e.manual)}` }, e.manual)),
      h("td", {}, e.version), h("td", {}, e.date), h("td", {}, e.type),
      h("td", {}, what), h("td", { class: "num" }, e.qty ?? ""),
      h("td", {}, e.counterparty_manual ?? e.counterparty_enterprise ?? e.counterparty ?? e.contractor ?? ""),
      h("td", {}, (e.findings || []).map((f) => badge(f.rule, f.severity))));
  };
  const load = async (append) => {
    const { body, next: after } = await api("timeline", { ...params(), limit: 200, after: append ? next : undefined });
    if (!append) rows.replaceChildren();
    rows.append(...body.map(row));
    next = after;
    show(more, Boolean(next));
    count.textContent = `${rows.children.length} 条事件 events`;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(false).catch(failed);
  });
  more.addEventListener("click", () => load(true).catch(failed));
  await load(false);
  return { name: "timeline", refresh: () => load(false) };
}

// ---- deadlines -------------------------------------------------------------------------

async function deadlinesView() {
  const box = h("div", { id: "deadlines-view" }, h("h2", {}, "期限 Deadlines"));
  view.append(box);
  const KIND = { report: "报核 Report", expiry: "到期 Expiry", carryover_receipt: "结转收货 Carry-over receipt" };
  const render = async () => {
    const { body } = await api("deadlines");
    const overdue = body.filter((d) => d.overdue).length;
    box.replaceChildren(h("h2", {}, "期限 Deadlines"),
      h("p", { id: "deadlines-summary" }, `${overdue} 已逾期 overdue · ${body.length - overdue} 即将到期 coming up`),
      body.length ? table("deadlines", [["到期日 Due"], ["剩余天数 Days", true], ["手册 Manual"], ["企业 Enterprise"], ["类型 Kind"], ["事件 Event"], ["说明 Detail"]],
        body.map((d) => h("tr", { class: d.overdue ? "overdue" : "" },
          h("td", {}, d.due),
          h("td", { class: "num" }, badge(String(d.days_remaining), d.overdue ? "overdue" : d.days_remaining <= 30 ? "soon" : "ok")),
          h("td", {}, h("a", { href: `#/manual/${encodeURIComponent(d.manual)}` }, d.manual)),
          h("td", {}, d.enterprise), h("td", {}, KIND[d.kind] || d.kind), h("td", {}, d.event ?? ""), h("td", {}, d.detail))))
        : h("p", { class: "muted" }, "没有期限 Nothing due."));
  };
  await render();
  return { name: "deadlines", refresh: render };
}

// ---- live updates ----------------------------------------------------------------------

let live = null;

function stopLive() {
  live?.abort();
  live = null;
  const el = document.getElementById("live");
  el.classList.remove("on");
  el.textContent = "—";
}

async function startLive() {
  stopLive();
  const controller = new AbortController();
  live = controller;
  const el = document.getElementById("live");
  let head = null;
  while (live === controller) {
    try {
      const response = await fetch("/api/v1/events", {
        headers: { Authorization: `Bearer ${token()}` }, signal: controller.signal,
      });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      el.classList.add("on");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
          if (!data) continue;
          const { position } = JSON.parse(data);
          el.textContent = `实时 Live · #${position}`;
          el.dataset.position = String(position);
          if (head !== null && position !== head && current?.refresh) current.refresh().catch(failed);
          head = position;
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    el.classList.remove("on");
    el.textContent = "重连中 Reconnecting…";
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

// ---- start -------------------------------------------------------------------------------

takeTokenFromAddress();
if (token()) signedIn();
else signOut();

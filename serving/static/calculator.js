// The risk-calculator page: plain JavaScript, no library, no build step, no request outside this service.
//
// It reads the OpenAPI document (open) to find each task's predict route and request model, asks
// /v1/<task>/model (with the API key kept in sessionStorage) which tasks have a model, builds the form from the
// request model and the model's labels (predictor labels and units, from the task spec), posts the patient to
// /v1/<task>/predict and shows the answer: the risk at each horizon with its 95 % interval, the curves and the
// contributions' waterfall (both as inline SVG), the warnings, and the model's identity and intended use. Every
// word about a task (endpoint titles and phrases, intended use) comes from /v1/<task>/model, never from here.
// A 422 puts each reason next to its field; a 401 asks for the key again.
"use strict";

(function () {
  const KEY_STORAGE = "relapse-risk-api-key";
  const SVG_NS = "http://www.w3.org/2000/svg"; // an XML namespace name, never fetched
  const KIND_LABELS = {
    incidence: "cumulative incidence (probability of the event by then)",
    survival: "probability of staying event-free",
  };
  const COLOURS = ["#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#17202a", "#a04000"];
  const state = { tasks: {}, task: null, submission: 0 };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function setState(name) {
    document.body.dataset.state = name;
  }

  // --- numbers as shown -------------------------------------------------------------------------------------

  function percent(p) {
    return p === null || p === undefined ? "—" : (p * 100).toFixed(1) + " %";
  }

  function interval(lower, upper) {
    if (lower === null || lower === undefined || upper === null || upper === undefined) return "no interval";
    return (lower * 100).toFixed(1) + "–" + (upper * 100).toFixed(1) + " %";
  }

  function points(pp) {
    return (pp >= 0 ? "+" : "−") + Math.abs(pp).toFixed(2) + " pp";
  }

  function plain(value) {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  }

  function endpointWords(name) {
    const labels = (state.task && state.task.model.labels) || {};
    const words = (labels.endpoints || {})[name] || {};
    return { title: words.title || name.replace(/_/g, " "), phrase: words.phrase || name.replace(/_/g, " ") };
  }

  function endpointLabel(name) {
    return endpointWords(name).title;
  }

  // --- the API key and calls --------------------------------------------------------------------------------

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  function call(path, options) {
    const init = Object.assign({ cache: "no-store" }, options || {});
    init.headers = Object.assign({ Accept: "application/json" }, init.headers || {});
    init.headers.Authorization = "Bearer " + apiKey();
    return fetch(path, init);
  }

  function askForKey(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    $("key-panel").hidden = false;
    $("key-message").textContent = message || "";
    $("api-key").value = "";
    $("api-key").focus();
    setState("needs-key");
  }

  function pageMessage(text) {
    $("page-message").textContent = text || "";
  }

  // --- tasks ------------------------------------------------------------------------------------------------

  function resolve(doc, schema) {
    if (schema && schema.$ref) {
      const name = schema.$ref.split("/").pop();
      return (doc.components && doc.components.schemas && doc.components.schemas[name]) || {};
    }
    return schema || {};
  }

  function discoverTasks(doc) {
    const titles = {};
    for (const tag of doc.tags || []) titles[tag.name] = tag.description || tag.name;
    const tasks = [];
    for (const [path, operations] of Object.entries(doc.paths || {})) {
      const match = /^\/v1\/([^/]+)\/predict$/.exec(path);
      if (!match || !operations.post || !operations.post.requestBody) continue;
      const task = (operations.post.tags || [])[0] || match[1].replace(/-/g, "_");
      const body = operations.post.requestBody.content["application/json"].schema;
      tasks.push({ task: task, slug: match[1], title: titles[task] || task, request: resolve(doc, body), doc: doc });
    }
    return tasks;
  }

  async function start() {
    setState("loading");
    pageMessage("");
    let doc;
    try {
      const response = await fetch("openapi.json", { cache: "no-store" });
      doc = await response.json();
    } catch (error) {
      pageMessage("The service's API description could not be read: " + error.message);
      setState("error");
      return;
    }
    const select = $("task-select");
    select.replaceChildren();
    state.tasks = {};
    for (const task of discoverTasks(doc)) {
      let response;
      try {
        response = await call("v1/" + task.slug + "/model");
      } catch (error) {
        continue;
      }
      if (response.status === 401 || response.status === 403) {
        askForKey(response.status === 403 ? "This key may not request predictions (it lacks the role predict): "
                                            + "enter another." : "The key was refused: enter it again.");
        return;
      }
      if (!response.ok) continue; // no champion for this task (503)
      task.model = await response.json();
      state.tasks[task.task] = task;
      const title = (task.model.labels && task.model.labels.title) || task.title;
      select.append(el("option", { value: task.task }, task.task + " — " + title));
    }
    $("key-panel").hidden = true;
    $("task-panel").hidden = false;
    if (!Object.keys(state.tasks).length) {
      pageMessage("No task has a model loaded: train and promote one (make train), then reload this page.");
      $("model-panel").hidden = true;
      setState("no-task");
      return;
    }
    $("model-panel").hidden = false;
    await selectTask(select.value);
  }

  async function selectTask(name) {
    setState("loading");
    const task = state.tasks[name];
    state.task = task;
    const identity = task.model.model || {};
    $("model-name").textContent = identity.name || task.task;
    $("model-version").textContent = identity.version || "?";
    $("model-family").textContent = identity.family || "";
    $("model-panel").dataset.task = task.task;
    buildForm(task);
    showResults(false);
    $("patient-form").hidden = false;
    showIntendedUse(task);
    setState("ready");
  }

  // --- intended use (from /v1/<task>/model: the task spec's words, carried by the bundle) ------------------

  function showIntendedUse(task) {
    const box = $("intended-use");
    box.replaceChildren();
    box.dataset.task = task.task;
    const use = task.model.use;
    if (!use) {
      box.append(el("p", { class: "hint" }, "This model version does not state its intended use: ask whoever "
        + "trained it before relying on it."));
      return;
    }
    box.append(el("p", { class: "use" }, use.intended_use));
    box.append(el("p", { class: "limits" }, use.users_and_limits));
  }

  // --- the form ---------------------------------------------------------------------------------------------

  function nonNull(property) {
    if (!property.anyOf) return property;
    const branch = property.anyOf.find((b) => b.type !== "null" || b.$ref) || {};
    return Object.assign({}, branch, { description: property.description, title: property.title });
  }

  // `words` is the field's entry in the model's labels ({label, description, unit}); `predictor` its schema entry
  // (range); a field the model does not describe (none yet) falls back on the request model's own description.
  function fieldRow(name, property, words, predictor, required) {
    const base = nonNull(property);
    const kind = base.enum ? "category" : base.type === "boolean" ? "boolean"
      : (base.type === "number" || base.type === "integer") ? "number" : "text";
    const id = "field-" + name;
    const description = (words.description || (property.description || "").replace(/ \[.*$/, "")
      || property.title || name).trim().replace(/\.$/, "");
    const shortText = words.label || description;
    const row = el("div", { class: "field", "data-field": name, "data-kind": kind });
    const label = el("label", { for: id }, shortText);
    if (required) {
      label.append(" ");
      label.append(el("span", { class: "required-mark", title: "required" }, "*"));
    }
    let control;
    if (kind === "category" || kind === "boolean") {
      control = el("select", { id: id, name: name });
      control.append(el("option", { value: "" }, required ? "— choose —" : "— unknown —"));
      const values = kind === "boolean" ? [["true", "yes"], ["false", "no"]] : base.enum.map((v) => [v, v]);
      for (const [value, text] of values) control.append(el("option", { value: value }, text));
    } else if (kind === "number") {
      control = el("input", { id: id, name: name, type: "number", step: "any", inputmode: "decimal" });
      if (base.minimum !== undefined) control.setAttribute("min", base.minimum);
      if (base.maximum !== undefined) control.setAttribute("max", base.maximum);
    } else {
      control = el("input", { id: id, name: name, type: "text", autocomplete: "off" });
      if (base.maxLength) control.setAttribute("maxlength", base.maxLength);
    }
    if (required) control.setAttribute("aria-required", "true");
    const parts = [];
    if (words.unit) parts.push("unit: " + words.unit);
    const low = base.minimum !== undefined ? base.minimum : predictor.minimum;
    const high = base.maximum !== undefined ? base.maximum : predictor.maximum;
    if (kind === "number" && low !== undefined && low !== null && high !== undefined && high !== null) {
      parts.push("range " + plain(low) + " to " + plain(high));
    }
    parts.push(required ? "required" : "optional");
    const meta = el("span", { class: "meta", id: id + "-meta", "data-unit": words.unit || "" }, parts.join(" · "));
    const error = el("p", { class: "field-error", id: "error-" + name, "data-error-for": name, role: "alert" });
    const warning = el("p", { class: "field-warning", id: "warning-" + name, "data-warning-for": name });
    control.setAttribute("aria-describedby", meta.id + " " + error.id + " " + warning.id);
    row.append(label, control, error, warning, meta);
    if (shortText !== description) row.append(el("span", { class: "description" }, description));
    row.append(el("code", {}, name));
    return row;
  }

  function buildForm(task) {
    const schema = task.model.schema || {};
    const predictors = {};
    for (const p of [...(schema.predictors || []), ...(schema.grouping || [])]) predictors[p.name] = p;
    const words = (task.model.labels || {}).predictors || {};
    const required = new Set(task.request.required || []);
    const fields = $("fields");
    fields.replaceChildren();
    for (const [name, property] of Object.entries(task.request.properties || {})) {
      if (name === "explain") continue;
      fields.append(fieldRow(name, property, words[name] || {}, predictors[name] || {}, required.has(name)));
    }
    const explain = resolve(task.doc, nonNull((task.request.properties || {}).explain || {}));
    const endpoint = (explain.properties || {}).endpoint || {};
    const horizon = (explain.properties || {}).horizon_months || {};
    const endpoints = endpoint.enum || Object.keys(schema.endpoints || {});
    const endpointSelect = $("explain-endpoint");
    endpointSelect.replaceChildren();
    for (const name of endpoints) {
      const option = el("option", { value: name }, endpointLabel(name));
      if (name === endpoint.default) option.selected = true;
      endpointSelect.append(option);
    }
    const horizonSelect = $("explain-horizon");
    horizonSelect.replaceChildren();
    const main = horizon.default !== undefined ? horizon.default : task.model.main_horizon_months;
    for (const months of task.model.horizons_months || []) {
      const option = el("option", { value: months }, months + " months");
      if (Number(months) === Number(main)) option.selected = true;
      horizonSelect.append(option);
    }
    $("explain-options").hidden = !endpoints.length;
    clearErrors();
  }

  function readForm() {
    const body = {};
    const problems = [];
    for (const row of $("fields").querySelectorAll(".field")) {
      const name = row.dataset.field;
      const control = row.querySelector("input, select");
      const kind = row.dataset.kind;
      if (control.value === "") {
        if (kind === "number" && control.validity && control.validity.badInput) {
          problems.push({ location: "body." + name, reason: "not a number" });
        }
        continue; // blank: not sent (the service says so if the field is required)
      }
      if (kind === "number") {
        const value = Number(control.value);
        if (Number.isFinite(value)) body[name] = value;
        else problems.push({ location: "body." + name, reason: "not a number" });
      } else if (kind === "boolean") {
        body[name] = control.value === "true";
      } else {
        body[name] = kind === "text" ? control.value.trim() : control.value;
      }
    }
    if (!$("explain-options").hidden && $("explain-endpoint").value) {
      body.explain = { endpoint: $("explain-endpoint").value, horizon_months: Number($("explain-horizon").value) };
    }
    return { body: body, problems: problems };
  }

  function clearErrors() {
    for (const node of document.querySelectorAll(".field-error, .field-warning")) node.textContent = "";
    for (const row of document.querySelectorAll(".field.invalid")) row.classList.remove("invalid");
    for (const control of document.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
    $("form-error").textContent = "";
  }

  function showFieldErrors(fields, message) {
    const general = [];
    let first = null;
    for (const field of fields || []) {
      const location = String(field.location || "");
      const name = location.startsWith("body.") ? location.slice(5).split(".")[0] : "";
      const slot = name ? $("error-" + name) : null;
      if (!slot) {
        general.push((name === "explain" ? "Explain: " : "") + field.reason);
        continue;
      }
      slot.textContent = slot.textContent ? slot.textContent + "; " + field.reason : field.reason;
      const row = slot.closest(".field");
      row.classList.add("invalid");
      const control = row.querySelector("input, select");
      control.setAttribute("aria-invalid", "true");
      if (!first) first = control;
    }
    const summary = first ? "Check the marked field(s)." : (message || "The request was refused.");
    $("form-error").textContent = general.length ? summary + " " + general.join("; ") : summary;
    if (first) first.focus();
  }

  async function submit(event) {
    event.preventDefault();
    if (!state.task) return;
    clearErrors();
    const { body, problems } = readForm();
    if (problems.length) {
      showFieldErrors(problems);
      setState("invalid");
      return;
    }
    const submission = ++state.submission;
    const button = $("submit");
    button.disabled = true;
    $("status").textContent = "Estimating…";
    setState("busy");
    showResults(false);
    try {
      const response = await call("v1/" + state.task.slug + "/predict", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      let answer = null;
      try {
        answer = await response.json();
      } catch (error) {
        answer = null;
      }
      if (response.ok && answer) {
        renderAnswer(answer);
        setState("result");
      } else if (response.status === 401) {
        askForKey("The key was refused: enter it again, then submit the patient again.");
      } else if (response.status === 422 && answer) {
        showFieldErrors(answer.fields, answer.message);
        setState("invalid");
      } else {
        $("form-error").textContent = (answer && answer.message) || "The service answered " + response.status + ".";
        setState("error");
      }
    } catch (error) {
      $("form-error").textContent = "The service did not answer: " + error.message;
      setState("error");
    } finally {
      button.disabled = false;
      $("status").textContent = "";
      $("patient-form").dataset.submission = String(submission);
    }
  }

  // --- the answer -------------------------------------------------------------------------------------------

  function showResults(visible) {
    $("results").hidden = !visible;
    $("results").classList.remove("stale");
    $("stale-note").hidden = true;
  }

  function renderAnswer(answer) {
    const identity = answer.model || {};
    $("result-model-name").textContent = identity.name || "";
    $("result-model-version").textContent = identity.version || "";
    $("result-model-family").textContent = identity.family || "";
    $("result-model-run").textContent = identity.run_id || "";
    renderRiskGroup(answer.risk_group);
    renderTable(answer.endpoints || {});
    $("interval-method").textContent = answer.interval_method
      ? "95 % intervals: " + answer.interval_method + "."
      : "This model version gives no intervals.";
    renderCurves(answer.endpoints || {});
    renderWaterfall(answer.contributions, answer.endpoints || {});
    renderWarnings(answer.warnings || []);
    $("results").dataset.submission = String(state.submission);
    showResults(true);
  }

  function renderRiskGroup(group) {
    const box = $("risk-group");
    box.replaceChildren();
    if (!group) return;
    box.dataset.label = group.label;
    box.append("Risk group at " + group.horizon_months + " months: ");
    box.append(el("strong", {}, group.label));
    const cuts = (group.cut_points || []).map((p) => percent(p)).join(" and ");
    if (cuts) box.append(" (cut-points: " + cuts + ", the tertiles of the training patients' risk)");
  }

  function renderTable(endpoints) {
    const names = Object.keys(endpoints);
    const months = [];
    for (const name of names) {
      for (const h of endpoints[name].horizons) if (!months.includes(h.months)) months.push(h.months);
    }
    months.sort((a, b) => a - b);
    const head = el("tr");
    head.append(el("th", { scope: "col" }, "Endpoint"));
    for (const m of months) head.append(el("th", { scope: "col" }, m + " months"));
    $("risk-table").tHead.replaceChildren(head);
    const body = $("risk-table").tBodies[0];
    body.replaceChildren();
    for (const name of names) {
      const endpoint = endpoints[name];
      const row = el("tr", { "data-endpoint": name });
      const header = el("th", { scope: "row" }, endpointLabel(name));
      header.append(el("span", { class: "kind" }, KIND_LABELS[endpoint.kind] || endpoint.kind));
      row.append(header);
      for (const m of months) {
        const h = endpoint.horizons.find((x) => x.months === m);
        const cell = el("td");
        if (h) {
          const probability = el("span", { class: "probability", "data-endpoint": name, "data-months": m,
            "data-probability": h.probability === null ? "" : h.probability }, percent(h.probability));
          if (h.probability === null) {
            probability.title = "no estimate: too few training patients were followed this long";
          }
          cell.append(probability, el("span", { class: "interval", "data-endpoint": name, "data-months": m,
            "data-lower": h.lower === null ? "" : h.lower, "data-upper": h.upper === null ? "" : h.upper },
          h.probability === null ? "" : interval(h.lower, h.upper)));
        }
        row.append(cell);
      }
      body.append(row);
    }
  }

  function renderCurves(endpoints) {
    const box = $("curve");
    box.replaceChildren();
    const names = Object.keys(endpoints);
    if (!names.length) return;
    const width = 720, height = 300, left = 52, right = 16, top = 12, bottom = 40;
    let maxMonths = 0;
    for (const name of names) maxMonths = Math.max(maxMonths, ...endpoints[name].curve.months);
    maxMonths = maxMonths || 60;
    const x = (m) => left + (m / maxMonths) * (width - left - right);
    const y = (p) => top + (1 - p) * (height - top - bottom);
    const chart = svgEl("svg", { id: "curve-chart", viewBox: "0 0 " + width + " " + height, width: width,
      height: height, role: "img" });
    chart.append(svgEl("title", {}, "Probability of each endpoint by month, with the 95 % intervals at the horizons"));
    for (let p = 0; p <= 1.0001; p += 0.2) {
      chart.append(svgEl("line", { class: "grid", x1: left, x2: width - right, y1: y(p), y2: y(p) }));
      chart.append(svgEl("text", { x: left - 6, y: y(p) + 4, "text-anchor": "end" }, Math.round(p * 100) + " %"));
    }
    const ticks = new Set([0]);
    for (const name of names) for (const h of endpoints[name].horizons) ticks.add(h.months);
    for (const m of [...ticks].sort((a, b) => a - b)) {
      chart.append(svgEl("line", { class: "axis", x1: x(m), x2: x(m), y1: height - bottom, y2: height - bottom + 4 }));
      chart.append(svgEl("text", { x: x(m), y: height - bottom + 16, "text-anchor": "middle" }, m));
    }
    chart.append(svgEl("text", { x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle",
      class: "muted" }, "months"));
    chart.append(svgEl("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom,
      y2: height - bottom }));
    chart.append(svgEl("line", { class: "axis", x1: left, x2: left, y1: top, y2: height - bottom }));
    const legend = el("ul", { class: "legend" });
    names.forEach((name, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const curve = endpoints[name].curve;
      const path = curve.months.map((m, i) => x(m).toFixed(1) + "," + y(curve.probability[i]).toFixed(1)).join(" ");
      chart.append(svgEl("polyline", { class: "curve", stroke: colour, points: path, "data-endpoint": name }));
      for (const h of endpoints[name].horizons) {
        if (h.probability === null) continue;
        if (h.lower !== null && h.upper !== null) {
          chart.append(svgEl("line", { class: "whisker", stroke: colour, x1: x(h.months), x2: x(h.months),
            y1: y(h.lower), y2: y(h.upper) }));
        }
        chart.append(svgEl("circle", { cx: x(h.months), cy: y(h.probability), r: 3, fill: colour,
          "data-endpoint": name, "data-months": h.months }));
      }
      const swatch = svgEl("svg", { width: 18, height: 10, viewBox: "0 0 18 10", "aria-hidden": "true" });
      swatch.append(svgEl("line", { x1: 0, x2: 18, y1: 5, y2: 5, stroke: colour, "stroke-width": 3 }));
      const item = el("li");
      item.append(swatch, endpointLabel(name));
      legend.append(item);
    });
    box.append(chart, legend);
  }

  function valueText(item) {
    if (item.value === null || item.value === undefined) return "not given";
    if (item.value === true) return "yes";
    if (item.value === false) return "no";
    if (typeof item.value === "number") return plain(item.value) + (item.units ? " " + item.units : "");
    return String(item.value);
  }

  function renderWaterfall(contributions, endpoints) {
    const box = $("waterfall");
    box.replaceChildren();
    $("waterfall-caption").textContent = "";
    if (!contributions || !contributions.items) return;
    const base = contributions.base_value * 100;
    const items = [...contributions.items].sort((a, b) => Math.abs(b.percentage_points)
      - Math.abs(a.percentage_points));
    // Red is bad news for the patient, blue good news: raising a survival probability is good, raising an
    // incidence bad (the PNG chart of /explain colours the same way).
    const survival = (endpoints[contributions.endpoint] || {}).kind === "survival";
    const rows = [{ label: "average training patient", kind: "total", start: 0, end: base }];
    let running = base;
    for (const item of items) {
      const raises = item.percentage_points >= 0;
      rows.push({ label: item.feature + " = " + valueText(item), kind: raises !== survival ? "worse" : "better",
        start: running, end: running + item.percentage_points, item: item });
      running += item.percentage_points;
    }
    rows.push({ label: "this patient", kind: "total", start: 0, end: running });
    const endpoint = contributions.endpoint;
    $("waterfall-caption").textContent = endpointLabel(endpoint) + ": the probability of "
      + endpointWords(endpoint).phrase + " by " + plain(contributions.horizon_months) + " months ("
      + (KIND_LABELS[(endpoints[endpoint] || {}).kind] || "") + "), from the average training patient (" + percent(contributions.base_value) + ") to this patient ("
      + percent(running / 100) + "). Each bar is one predictor's contribution in percentage points (pp): red "
      + "is worse for the patient (it " + (survival ? "lowers" : "raises") + " the probability), blue is better.";
    let low = 0, high = 0;
    for (const r of rows) {
      low = Math.min(low, r.start, r.end);
      high = Math.max(high, r.start, r.end);
    }
    const step = high - low > 40 ? 10 : 5;
    low = Math.floor(low / step) * step;
    high = Math.ceil(high / step) * step;
    if (high <= low) high = low + step;
    const labelWidth = 300, barWidth = 330, valueWidth = 90, rowHeight = 22, top = 8, axis = 28;
    const width = labelWidth + barWidth + valueWidth;
    const height = top + rows.length * rowHeight + axis;
    const x = (v) => labelWidth + ((v - low) / (high - low)) * barWidth;
    const chart = svgEl("svg", { id: "waterfall-chart", viewBox: "0 0 " + width + " " + height, width: width,
      height: height, role: "img", "data-endpoint": endpoint, "data-horizon-months": contributions.horizon_months });
    chart.append(svgEl("title", {}, $("waterfall-caption").textContent));
    for (let v = low; v <= high + 1e-9; v += step) {
      chart.append(svgEl("line", { class: "grid", x1: x(v), x2: x(v), y1: top, y2: height - axis }));
      chart.append(svgEl("text", { x: x(v), y: height - axis + 14, "text-anchor": "middle" }, v + " %"));
    }
    rows.forEach((r, index) => {
      const yTop = top + index * rowHeight;
      const group = svgEl("g", { class: "waterfall-row", "data-kind": r.kind });
      if (r.item) {
        group.setAttribute("data-feature", r.item.feature);
        group.setAttribute("data-percentage-points", r.item.percentage_points);
      } else {
        group.setAttribute("data-total", (r.end / 100).toString());
      }
      group.append(svgEl("text", { x: labelWidth - 8, y: yTop + 15, "text-anchor": "end" }, r.label));
      const x0 = x(Math.min(r.start, r.end)), x1 = x(Math.max(r.start, r.end));
      group.append(svgEl("rect", { class: r.kind, x: x0, y: yTop + 4, width: Math.max(1, x1 - x0),
        height: rowHeight - 8 }));
      const text = r.item ? points(r.item.percentage_points) : percent(r.end / 100);
      group.append(svgEl("text", { x: x1 + 6, y: yTop + 15 }, text));
      if (index < rows.length - 1) {
        const next = rows[index + 1];
        const joint = next.kind === "total" ? next.end : next.start;
        group.append(svgEl("line", { class: "connector", x1: x(joint), x2: x(joint), y1: yTop + rowHeight - 4,
          y2: yTop + rowHeight + 4 }));
      }
      chart.append(group);
    });
    chart.append(svgEl("line", { class: "axis", x1: labelWidth, x2: labelWidth + barWidth, y1: height - axis,
      y2: height - axis }));
    box.append(chart);
  }

  function renderWarnings(warnings) {
    const list = $("warnings");
    list.replaceChildren();
    if (!warnings.length) {
      list.append(el("li", { class: "none" }, "No warnings for this patient."));
      return;
    }
    for (const warning of warnings) {
      const item = el("li", { "data-code": warning.code, "data-field": warning.field || "" },
        (warning.field ? warning.field + ": " : "") + warning.message);
      list.append(item);
      const slot = warning.field ? $("warning-" + warning.field) : null;
      if (slot) slot.textContent = "Caution: " + warning.message;
    }
  }

  // --- wiring -----------------------------------------------------------------------------------------------

  function init() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) {
        $("key-message").textContent = "Enter the key.";
        return;
      }
      sessionStorage.setItem(KEY_STORAGE, key);
      $("key-message").textContent = "";
      $("api-key").value = "";
      if (state.task) { // the key was refused mid-way: keep the patient on the form
        $("key-panel").hidden = true;
        setState("ready");
      } else {
        $("key-panel").hidden = true;
        start();
      }
    });
    $("forget-key").addEventListener("click", () => {
      state.task = null;
      state.tasks = {};
      $("task-panel").hidden = true;
      $("patient-form").hidden = true;
      showResults(false);
      askForKey("");
    });
    $("task-select").addEventListener("change", (event) => selectTask(event.target.value));
    $("patient-form").addEventListener("submit", submit);
    $("patient-form").addEventListener("input", () => {
      if (!$("results").hidden) {
        $("results").classList.add("stale");
        $("stale-note").hidden = false;
      }
    });
    if (apiKey()) start();
    else askForKey("");
  }

  init();
})();

// Compare: "should you fine-tune?" — `tunesmith compare` as a background task. #/compare starts
// one from uploaded files (or files uploaded here) and lists past ones; #/compare/ID watches one
// and, once it has succeeded, shows the server's own HTML report in a sandboxed frame.
import { api, listAll, upload } from "../api.js";
import { badge, errorBox, every, field, fill, fmtTime, h, saveText, toast } from "../ui.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const METRICS = [
  "auto",
  "exact",
  "json-fields",
  "set-f1",
  "rouge-l",
  "label-accuracy",
  "tool-calls",
];

export async function render(root, { args, query, signal }) {
  if (args[0]) return detail(root, args[0], signal);
  return start(root, query, signal);
}

// --- #/compare: a new comparison, and the past ones ------------------------------------------------

async function start(root, query, signal) {
  const [files, { data: models }, { data: past }] = await Promise.all([
    listAll("/v1/files?purpose=fine-tune"),
    api("/v1/models", { signal }),
    api("/v1/comparisons?limit=50", { signal }),
  ]);
  const tuned = models.filter((m) => m.tunesmith?.kind !== "builtin");
  // The model a link asked for, else the newest fine-tuned one (checkpoints are for choosing).
  const wantedTuned =
    query.get("fine_tuned_model") || tuned.findLast((m) => m.tunesmith?.kind === "fine-tuned")?.id;
  const wantedBase =
    query.get("model") || models.find((m) => m.id === wantedTuned)?.tunesmith?.base_model;

  const training = filePicker(
    "Training file",
    "training_file",
    files,
    "The pool of demonstrations (and the training data with “Train one now”).",
  );
  const test = filePicker(
    "Test file",
    "test_file",
    files,
    "Held-out examples, scored for every strategy.",
  );
  const model = h(
    "select",
    { name: "model" },
    models
      .filter((m) => m.tunesmith?.kind === "builtin" || !m.tunesmith)
      .map((m) => option(m.id, m.id === wantedBase)),
  );
  const fineTuned = h(
    "select",
    { name: "fine_tuned_model" },
    h("option", { value: "" }, "— none —"),
    tuned.map((m) => option(m.id, m.id === wantedTuned)),
  );
  if (wantedTuned && !tuned.some((m) => m.id === wantedTuned))
    fineTuned.append(option(wantedTuned, true));
  // More models to rank against the first: SFT and DPO, or two checkpoints of one job.
  const alsoRank = h(
    "select",
    { name: "also_rank", multiple: true, size: Math.min(4, Math.max(2, tuned.length)) },
    tuned.map((m) => option(m.id, false)),
  );
  const trainNow = h("input", { type: "checkbox", name: "train_now" });
  const curve = h("input", { type: "checkbox", name: "learning_curve" });
  const shots = numberInput("shots", 3);
  const metric = h(
    "select",
    { name: "metric" },
    METRICS.map((m) => option(m, false)),
  );
  const limit = numberInput("limit", "");
  const maxTokens = numberInput("max_tokens", "");
  const probes = h("input", { type: "checkbox", name: "probes", checked: true });
  const seed = numberInput("seed", 0);
  const problem = h("div");
  const submit = h("button", { class: "primary", type: "submit" }, "Start comparison");

  const form = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "new-comparison",
      novalidate: true, // the server checks the values and names the wrong one
      onsubmit: async (event) => {
        event.preventDefault();
        fill(problem);
        const json = {
          training_file: training.select.value,
          test_file: test.select.value,
          model: model.value,
          train_now: trainNow.checked,
          learning_curve: curve.checked,
          shots: Number(shots.value),
          metric: metric.value,
          probes: probes.checked,
          seed: Number(seed.value),
        };
        const chosen = [
          ...new Set([fineTuned.value, ...[...alsoRank.selectedOptions].map((o) => o.value)]),
        ].filter(Boolean);
        if (chosen.length > 1) json.fine_tuned_models = chosen;
        else if (chosen.length) json.fine_tuned_model = chosen[0];
        if (limit.value) json.limit = Number(limit.value);
        if (maxTokens.value) json.max_tokens = Number(maxTokens.value);
        submit.disabled = true;
        try {
          const made = await api("/v1/comparisons", { method: "POST", json, signal });
          location.hash = `#/compare/${made.id}`;
        } catch (err) {
          if (err?.name !== "AbortError")
            fill(problem, errorBox(err, { title: "The comparison was not started" }));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h2", { id: "new-comparison" }, "New comparison"),
    h(
      "p",
      { class: "muted" },
      "Zero-shot, few-shot and fine-tuned answers on the same test file: quality, tokens, latency and a verdict.",
    ),
    h("div", { class: "row" }, training.el, test.el),
    h(
      "div",
      { class: "grid" },
      field("Base model", model),
      field(
        "Fine-tuned model",
        fineTuned,
        "A model trained on this task, or none with “Train one now”.",
      ),
      field(
        "Also rank",
        alsoRank,
        "More fine-tuned models or checkpoints, ranked with the first (Ctrl- or Cmd-click).",
      ),
    ),
    h(
      "div",
      { class: "field check" },
      h("label", {}, trainNow, " Train one now on the training file"),
    ),
    h(
      "div",
      { class: "field check" },
      h(
        "label",
        {},
        curve,
        " Learning curve: also train on 12.5%, 25% and 50% of the training file (does more data help?)",
      ),
    ),
    h(
      "details",
      {},
      h("summary", {}, "More settings"),
      h(
        "div",
        { class: "grid" },
        field("Shots", shots, "Examples in the few-shot prompt."),
        field("Metric", metric),
        field("Limit", limit, "Score only the first N test examples (empty: all)."),
        field("Max tokens", maxTokens, "Answer length cap (empty: from the references)."),
        field("Seed", seed),
      ),
      h(
        "div",
        { class: "field check" },
        h("label", {}, probes, " General-ability probes (does fine-tuning forget?)"),
      ),
    ),
    h("div", { class: "actions" }, submit),
    problem,
  );

  root.append(
    h("h1", {}, "Compare"),
    form,
    h(
      "section",
      { class: "card", "aria-labelledby": "past" },
      h("h2", { id: "past" }, "Past comparisons"),
      pastTable(past),
    ),
  );
}

/** The fine-tuned models of a comparison's config: one name, or several ranked. */
function modelsOf(config) {
  const names = [config.fine_tuned ?? []].flat();
  return [...names, ...(config.train_now ? ["one trained now"] : [])].join(", ");
}

function option(value, selected) {
  return h("option", { value, selected }, value);
}

function numberInput(name, value) {
  return h("input", { type: "number", name, value: String(value), inputMode: "numeric", min: 0 });
}

/** A select of uploaded files plus an upload control that adds the new file and picks it. */
function filePicker(label, name, files, help) {
  const select = h(
    "select",
    { name },
    files.length ? null : h("option", { value: "" }, "— upload a file —"),
    files.map((f) => fileOption(f)),
  );
  const input = h("input", { type: "file", accept: ".jsonl,.json,.csv,.parquet,.txt" });
  const status = h("span", { class: "small muted", "aria-live": "polite" });
  input.addEventListener("change", async () => {
    const file = input.files?.[0];
    if (!file) return;
    fill(status, `Uploading ${file.name}…`);
    try {
      const made = await upload(file, {
        onProgress: (share) => fill(status, `Uploading ${file.name}… ${Math.round(share * 100)}%`),
      });
      select.querySelector('option[value=""]')?.remove();
      select.prepend(fileOption(made));
      select.value = made.id;
      fill(status, `Uploaded ${made.filename} (${made.id}).`);
    } catch (err) {
      fill(status, errorBox(err, { title: `${file.name} was not uploaded` }));
    }
    input.value = "";
  });
  const el = h(
    "div",
    {},
    field(label, select, help),
    field(`Upload ${label.toLowerCase()}`, input),
    status,
  );
  return { el, select };
}

function fileOption(file) {
  return h(
    "option",
    { value: file.id },
    `${file.filename} — ${file.id} (${fmtTime(file.created_at)})`,
  );
}

function pastTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "None yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Comparison", "Models", "Status", "Verdict", "Created"].map((t) =>
            h("th", { scope: "col" }, t),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((c) =>
          h(
            "tr",
            { dataset: { comparison: c.id } },
            h("th", { scope: "row" }, h("a", { href: `#/compare/${c.id}` }, c.id)),
            h(
              "td",
              { class: "models" },
              h("code", {}, c.config.model),
              " vs ",
              h("code", {}, modelsOf(c.config) || "trained now"),
            ),
            h("td", {}, badge(c.status)),
            h("td", {}, c.recommendation?.headline || "—"),
            h("td", {}, fmtTime(c.created_at)),
          ),
        ),
      ),
    ),
  );
}

// --- #/compare/ID: one comparison, its progress and its report ------------------------------------

async function detail(root, id, signal) {
  const head = h("div", { class: "head" });
  const verdict = h("div");
  const events = h("ol", { class: "events", "aria-live": "polite", reversed: true });
  const report = h("div");
  const problem = h("div");
  root.append(
    h("p", {}, h("a", { href: "#/compare" }, "← All comparisons")),
    head,
    problem,
    verdict,
    report,
    h(
      "details",
      { class: "card", open: true },
      h("summary", {}, h("h2", { class: "inline" }, "Events")),
      events,
    ),
  );

  // Polled until it ends; the report loads once, when it turns succeeded.
  const watching = new AbortController();
  signal.addEventListener("abort", () => watching.abort());
  let shown = null; // the status last drawn
  every(
    1500,
    async () => {
      const [row, page] = await Promise.all([
        api(`/v1/comparisons/${id}`, { signal }),
        api(`/v1/comparisons/${id}/events?limit=100`, { signal }),
      ]);
      fill(
        events,
        page.data.map((e) =>
          h(
            "li",
            { class: `level-${e.level}` },
            h("span", { class: "small muted" }, fmtTime(e.created_at)),
            " ",
            e.message,
          ),
        ),
      );
      if (FINAL.has(row.status)) watching.abort();
      if (row.status === shown) return;
      shown = row.status;
      fill(head, header(row, { onCancel: () => cancel(id, problem, signal) }));
      if (row.error) fill(problem, errorBox(row.error, { title: "The comparison failed" }));
      if (row.recommendation) fill(verdict, verdictCard(row.recommendation));
      if (row.status === "succeeded") await showReport(report, id, signal);
    },
    watching.signal,
  );
}

function header(row, { onCancel }) {
  const c = row.config;
  return h(
    "div",
    { class: "card" },
    h("h1", {}, "Comparison ", h("code", {}, row.id), " ", badge(row.status)),
    h(
      "p",
      { class: "muted" },
      h("code", {}, c.model),
      " vs ",
      h("code", {}, modelsOf(c) || "a model trained now"),
      ` · ${c.shots} shots · metric ${c.metric}`,
      c.limit ? ` · first ${c.limit} examples` : "",
      ` · started ${fmtTime(row.created_at)}`,
      row.finished_at ? ` · ended ${fmtTime(row.finished_at)}` : "",
    ),
    FINAL.has(row.status)
      ? null
      : h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "danger", onclick: onCancel }, "Cancel"),
        ),
  );
}

async function cancel(id, problem, signal) {
  try {
    await api(`/v1/comparisons/${id}/cancel`, { method: "POST", signal });
    toast("Cancel requested.");
  } catch (err) {
    fill(problem, errorBox(err, { title: "It was not cancelled" }));
  }
}

function verdictCard(rec) {
  return h(
    "section",
    { class: "card verdict", "aria-labelledby": "verdict-title" },
    h("h2", { id: "verdict-title" }, "Verdict"),
    h("p", { class: "headline" }, rec.headline),
    rec.answers
      ? h(
          "ul",
          {},
          Object.entries(rec.answers).map(([k, v]) =>
            h("li", {}, h("strong", {}, `${k[0].toUpperCase()}${k.slice(1)}. `), v),
          ),
        )
      : null,
  );
}

/** The report is the server's self-contained HTML (inline CSS and SVG plots, no scripts): framed
 * with every sandbox restriction, so nothing in it can run or reach this page. */
async function showReport(box, id, signal) {
  const response = await api(`/v1/comparisons/${id}/report`, { raw: true, signal });
  const html = await response.text();
  fill(
    box,
    h(
      "section",
      { class: "card", "aria-labelledby": "report-title" },
      h(
        "div",
        { class: "report-head" },
        h("h2", { id: "report-title" }, "Report"),
        h(
          "button",
          { type: "button", onclick: () => saveText(html, `${id}.html`, "text/html") },
          "Download report",
        ),
      ),
      h("iframe", { class: "report", title: `Report of ${id}`, sandbox: "", srcdoc: html }),
    ),
  );
}

// Data: upload a training file, see what was detected and what is wrong with it (each error opens
// its line), token statistics with a histogram of lengths, a column mapping for tables, convert
// and split into new files, and "what the model is trained on": one example, token by token.
// Every answer comes from the data room through /v1/files/{id}/check|lines|render|convert|split.
import { api, listAll, upload } from "../api.js";
import { errorBox, fill, field, fmtBytes, fmtDuration, fmtTime, h } from "../ui.js";

// The suffixes tunesmith's readers tell apart (data/rows.py load_rows).
const ACCEPT = ".jsonl,.json,.csv,.tsv,.parquet,.pq";
const CHAT_ROLES = ["user", "assistant"];
const PAIR_ROLES = ["prompt", "chosen", "rejected"];
const NONE = "";
const LITERAL = "=literal";

export async function render(root, { args, signal }) {
  const fileId = args[0] || null;
  const files = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading files…"));
  const inspector = h("div", { class: "inspector" });
  fill(
    root,
    h("h1", {}, "Data"),
    h(
      "p",
      { class: "muted" },
      "Upload training data, check it the way training will read it, and see exactly which tokens the model learns from.",
    ),
    h(
      "div",
      { class: "row" },
      uploadCard(),
      h("section", { class: "card" }, h("h2", {}, "Uploaded files"), files),
    ),
    inspector,
  );
  listFiles(files, fileId, signal);
  if (fileId) await openFile(inspector, fileId, signal);
}

// --- upload and the list of files ---------------------------------------------------------------

function uploadCard() {
  const progress = h("progress", {
    max: 1,
    value: 0,
    hidden: true,
    "aria-label": "Upload progress",
  });
  const status = h("div", { "aria-live": "polite" });
  const input = h("input", { type: "file", id: "data-file", accept: ACCEPT, class: "file-input" });
  const zone = h(
    "div",
    { class: "dropzone" },
    h(
      "p",
      {},
      h("label", { for: "data-file", class: "pick" }, "Choose a training file"),
      " or drop it here.",
    ),
    input,
    h(
      "p",
      { class: "muted small" },
      "JSONL, JSON, CSV, TSV or Parquet: OpenAI chat or DPO, Alpaca, ShareGPT, prompt/completion, TRL preference, KTO, or any table with a column mapping.",
    ),
    progress,
  );
  const send = async (file) => {
    if (!file) return;
    progress.hidden = false;
    progress.value = 0;
    fill(status, h("p", {}, `Uploading ${file.name}…`));
    try {
      const stored = await upload(file, { onProgress: (share) => (progress.value = share) });
      location.hash = `#/data/${encodeURIComponent(stored.id)}`;
    } catch (err) {
      fill(status, errorBox(err, { title: `Could not upload ${file.name}` }));
    } finally {
      progress.hidden = true;
    }
  };
  input.addEventListener("change", () => send(input.files[0]));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    send(event.dataTransfer.files[0]);
  });
  return h("section", { class: "card" }, h("h2", {}, "Upload"), zone, status);
}

async function listFiles(box, openId, signal) {
  try {
    const all = await listAll("/v1/files?purpose=fine-tune");
    if (signal.aborted) return;
    if (!all.length) return fill(box, h("p", { class: "muted" }, "No files yet: upload one."));
    const rows = all.map((f) =>
      h(
        "tr",
        { class: f.id === openId ? "current" : null },
        h(
          "td",
          {},
          h(
            "a",
            {
              href: `#/data/${encodeURIComponent(f.id)}`,
              "aria-current": f.id === openId ? "true" : null,
            },
            f.filename,
          ),
        ),
        h("td", {}, h("code", {}, f.id)),
        h("td", {}, fmtBytes(f.bytes)),
        h("td", {}, fmtTime(f.created_at)),
      ),
    );
    fill(
      box,
      h(
        "div",
        { class: "table-wrap files" },
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", {}, "File"),
              h("th", {}, "Id"),
              h("th", {}, "Size"),
              h("th", {}, "Uploaded"),
            ),
          ),
          h("tbody", {}, rows),
        ),
      ),
    );
  } catch (err) {
    if (!signal.aborted) fill(box, errorBox(err, { title: "Could not list the files" }));
  }
}

// --- one file: the check ------------------------------------------------------------------------

async function openFile(box, fileId, signal) {
  const file = await api(`/v1/files/${encodeURIComponent(fileId)}`, { signal });
  const state = { file, mapping: null, report: null, signal };
  const model = h(
    "select",
    { id: "data-model" },
    h("option", { value: NONE }, "the built-in default"),
  );
  const maxLength = h("input", {
    id: "data-max-length",
    type: "number",
    min: 16,
    step: 1,
    placeholder: "training's default",
  });
  const use = h(
    "select",
    { id: "data-use" },
    h("option", { value: "training" }, "training"),
    h("option", { value: "held-out" }, "held-out data (validation or test)"),
  );
  // Left empty, the server applies training's own defaults: the check sees what a job would.
  state.options = () => ({
    ...(model.value ? { model: model.value } : {}),
    ...(maxLength.value ? { max_length: Number(maxLength.value) } : {}),
    ...(use.value === "held-out" ? { held_out: true } : {}),
  });
  const result = h("div", { "aria-live": "polite" });
  state.result = result;
  const settings = h(
    "form",
    {
      class: "settings",
      onsubmit: (event) => {
        event.preventDefault();
        runCheck(state);
      },
    },
    field("Model (tokenizer and chat template)", model),
    field(
      "Used for",
      use,
      "Training needs at least 10 examples; held-out data for validation or a comparison may be smaller.",
    ),
    field(
      "Max length (tokens)",
      maxLength,
      "Longer examples are truncated in training; empty: training's default.",
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Check again")),
  );
  fill(
    box,
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Checking ", h("span", { class: "filename" }, file.filename)),
      h(
        "p",
        { class: "muted small" },
        h("code", {}, file.id),
        ` · ${fmtBytes(file.bytes)} · uploaded ${fmtTime(file.created_at)}`,
      ),
      settings,
    ),
    result,
  );
  loadModels(model, signal);
  await runCheck(state);
}

async function loadModels(select, signal) {
  try {
    const models = await api("/v1/models", { signal });
    for (const m of models.data) select.append(h("option", { value: m.id }, m.id));
  } catch (err) {
    if (err?.name !== "AbortError") console.warn(err); // the default model still works
  }
}

async function runCheck(state) {
  const { file, result, signal } = state;
  fill(result, h("p", { class: "muted" }, "Checking with the model's tokenizer…"));
  let body;
  try {
    body = await api(`/v1/files/${encodeURIComponent(file.id)}/check`, {
      method: "POST",
      json: { ...state.options(), ...(state.mapping ? { mapping: state.mapping } : {}) },
      signal,
    });
  } catch (err) {
    if (signal.aborted) return;
    // A mapping that does not fit is the user's to fix: say so next to the form.
    fill(
      result,
      errorBox(err, { title: "The check was refused" }),
      state.columns ? mappingCard(state) : null,
    );
    return;
  }
  state.report = body.report;
  state.columns = body.columns;
  if (!body.report) {
    fill(
      result,
      h(
        "section",
        { class: "card" },
        h("h2", {}, "The file cannot be read as it is"),
        problemBox(body.problem),
      ),
      body.columns ? mappingCard(state) : null,
    );
    return;
  }
  const lineView = h("figure", {
    class: "line-view",
    "aria-live": "polite",
    hidden: true,
    tabindex: -1,
  });
  state.lineView = lineView;
  fill(
    result,
    summaryCard(state),
    body.columns ? mappingCard(state) : null,
    issuesCard(state, lineView),
    body.report.stats ? statsCard(body.report.stats, body.histogram) : null,
    body.report.n_examples ? tokensCard(state) : null,
    body.report.ok ? splitCard(state) : null,
  );
}

function problemBox(problem) {
  return h(
    "div",
    { class: "warning", role: "status" },
    h("p", {}, problem.message),
    problem.hint ? h("p", { class: "muted" }, problem.hint) : null,
  );
}

function summaryCard(state) {
  const { report, file } = state;
  const canonical = !state.mapping && (report.format === "chat" || report.format === "dpo");
  const convertBox = h("div", { "aria-live": "polite" });
  return h(
    "section",
    { class: "card summary" },
    h("h2", {}, "Summary"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Format detected"),
      h("dd", { class: "format" }, report.description),
      h("dt", {}, "Examples"),
      h("dd", { class: "n-examples" }, String(report.n_examples)),
      h("dt", {}, "Result"),
      h(
        "dd",
        {},
        report.ok
          ? h(
              "span",
              { class: "badge good" },
              state.options().held_out ? "ready as held-out data" : "ready to train",
            )
          : h(
              "span",
              { class: "badge bad" },
              `${report.errors.length} error${report.errors.length === 1 ? "" : "s"}`,
            ),
        report.warnings.length
          ? h(
              "span",
              { class: "badge wait" },
              `${report.warnings.length} warning${report.warnings.length === 1 ? "" : "s"}`,
            )
          : null,
      ),
    ),
    h(
      "div",
      { class: "actions" },
      report.ok && canonical && !state.options().held_out ? trainLink(file.id) : null,
      report.ok && !canonical
        ? h(
            "button",
            { type: "button", class: "primary", onclick: () => convert(state, convertBox) },
            "Save as chat JSONL",
          )
        : null,
    ),
    convertBox,
  );
}

function trainLink(trainingId, validationId) {
  const query = new URLSearchParams({ training_file: trainingId });
  if (validationId) query.set("validation_file", validationId);
  return h(
    "a",
    { class: "button primary", href: `#/new?${query}` },
    validationId ? "Train on these files" : "Train on this file",
  );
}

function openLink(file) {
  return h("a", { href: `#/data/${encodeURIComponent(file.id)}` }, file.filename);
}

async function convert(state, box) {
  fill(box, h("p", { class: "muted" }, "Saving…"));
  try {
    const made = await api(`/v1/files/${encodeURIComponent(state.file.id)}/convert`, {
      method: "POST",
      json: state.mapping ? { mapping: state.mapping } : {},
      signal: state.signal,
    });
    fill(
      box,
      h(
        "p",
        { class: "saved" },
        "Saved ",
        openLink(made),
        " (",
        h("code", {}, made.id),
        `, ${made.n_examples} examples).`,
      ),
      h("div", { class: "actions" }, trainLink(made.id)),
    );
  } catch (err) {
    if (!state.signal.aborted) fill(box, errorBox(err, { title: "Could not save the file" }));
  }
}

// --- errors and warnings, each opening its line ---------------------------------------------------

function issuesCard(state, lineView) {
  const { report } = state;
  if (!report.errors.length && !report.warnings.length) {
    return h(
      "section",
      { class: "card" },
      h("h2", {}, "Problems"),
      h("p", { class: "good" }, "No errors, no warnings."),
    );
  }
  const list = (issues, kind) =>
    h(
      "ul",
      { class: `issues ${kind}` },
      issues.map((issue) =>
        h(
          "li",
          {},
          issue.line != null
            ? h(
                "button",
                { type: "button", class: "link", onclick: () => showLine(state, issue, lineView) },
                `Line ${issue.line}`,
              )
            : h("span", { class: "where" }, "Whole file"),
          issue.field ? h("code", { class: "field-name" }, issue.field) : null,
          inValidation(state, issue)
            ? h("span", { class: "badge muted" }, "validation file")
            : null,
          h("span", { class: "message" }, issue.message),
        ),
      ),
    );
  return h(
    "section",
    { class: "card" },
    h("h2", {}, "Problems"),
    report.errors.length
      ? [h("h3", {}, `Errors (${report.errors.length})`), list(report.errors, "errors")]
      : null,
    report.warnings.length
      ? [h("h3", {}, `Warnings (${report.warnings.length})`), list(report.warnings, "warnings")]
      : null,
    lineView,
  );
}

function inValidation(state, issue) {
  return state.report.validation_file != null && issue.file === state.report.validation_file;
}

async function showLine(state, issue, view) {
  view.hidden = false;
  fill(view, h("p", { class: "muted" }, `Loading line ${issue.line}…`));
  const start = Math.max(1, issue.line - 1);
  try {
    const page = await api(
      `/v1/files/${encodeURIComponent(state.file.id)}/lines?start=${start}&count=3`,
      { signal: state.signal },
    );
    fill(
      view,
      h(
        "figcaption",
        {},
        `Line ${issue.line} of ${state.file.filename}`,
        h("span", { class: "muted" }, ` (${page.total_lines} lines)`),
      ),
      h(
        "pre",
        { class: "lines" },
        page.data.map((row) =>
          h(
            "span",
            {
              class: row.line === issue.line ? "line current" : "line",
              dataset: { line: row.line },
            },
            h("span", { class: "ln", "aria-hidden": "true" }, String(row.line)),
            h("span", { class: "text" }, row.text || " "),
          ),
        ),
      ),
      h("p", { class: "message" }, issue.message),
    );
    view.focus();
  } catch (err) {
    if (!state.signal.aborted)
      fill(view, errorBox(err, { title: `Could not read line ${issue.line}` }));
  }
}

// --- token statistics and the histogram -----------------------------------------------------------

function statsCard(stats, histogram) {
  const dist = (name, d) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, name),
      ["min", "p10", "median", "mean", "p90", "max"].map((k) => h("td", {}, round(d[k]))),
    );
  return h(
    "section",
    { class: "card stats" },
    h("h2", {}, "Token statistics"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Examples counted"),
      h("dd", {}, String(stats.n_examples)),
      h("dt", {}, "Epochs (auto)"),
      h("dd", {}, String(stats.n_epochs)),
      h("dt", {}, "Tokens per epoch"),
      h("dd", {}, stats.tokens_per_epoch.toLocaleString()),
      h("dt", {}, "Tokens trained on"),
      h("dd", {}, stats.billed_tokens.toLocaleString()),
      h("dt", {}, "Over max length"),
      h(
        "dd",
        {},
        `${stats.n_over_max_length}${stats.max_length ? ` (max ${stats.max_length})` : ""}`,
      ),
      h("dt", {}, "Estimated CPU time"),
      h(
        "dd",
        {},
        `${fmtDuration(stats.estimated_seconds)} at ${Math.round(stats.tokens_per_second)} tokens/s`,
      ),
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "distribution" },
        h("caption", {}, "Per example"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, ""),
            ["min", "p10", "median", "mean", "p90", "max"].map((k) => h("th", { scope: "col" }, k)),
          ),
        ),
        h(
          "tbody",
          {},
          dist("Messages", stats.messages),
          dist("Tokens", stats.total_tokens),
          dist("Tokens with loss", stats.assistant_tokens),
        ),
      ),
    ),
    histogram?.counts.length ? histogramFigure(histogram) : null,
  );
}

function round(x) {
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}

function binLabel(edges, i) {
  const low = edges[i];
  const high = edges[i + 1] - 1;
  return low === high ? String(low) : `${low}–${high}`;
}

function histogramFigure({ edges, counts }) {
  const top = Math.max(...counts);
  const total = counts.reduce((a, b) => a + b, 0);
  const bars = counts.map((n, i) =>
    h("div", {
      class: "bar",
      style: `height: ${(100 * n) / top}%`,
      title: `${binLabel(edges, i)} tokens: ${n} examples`,
    }),
  );
  const labels = counts.map((_, i) => h("span", {}, String(edges[i])));
  return h(
    "figure",
    { class: "histogram" },
    h(
      "figcaption",
      { id: "histogram-caption" },
      `Example lengths in tokens (the longest sequence of each): ${total} examples from ${edges[0]} to ${edges[edges.length - 1] - 1} tokens; the tallest bar holds ${top}.`,
    ),
    h(
      "div",
      { class: "plot", "aria-hidden": "true" },
      h("span", { class: "y-label" }, `${top} examples`),
      h("div", { class: "bars" }, bars),
      h("div", { class: "bin-labels" }, labels),
      h("span", { class: "x-label" }, "tokens per example"),
    ),
    h(
      "details",
      {},
      h("summary", {}, "The histogram as a table"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "bins", "aria-describedby": "histogram-caption" },
          h(
            "thead",
            {},
            h("tr", {}, h("th", { scope: "col" }, "Tokens"), h("th", { scope: "col" }, "Examples")),
          ),
          h(
            "tbody",
            {},
            counts.map((n, i) =>
              h("tr", {}, h("td", {}, binLabel(edges, i)), h("td", {}, String(n))),
            ),
          ),
        ),
      ),
    ),
  );
}

// --- the column mapping (CSV, TSV, Parquet) -------------------------------------------------------

function mappingCard(state) {
  const columns = state.columns;
  const current = state.mapping || {};
  const pairs = Object.keys(current).some((role) => PAIR_ROLES.includes(role));
  const kind = h(
    "select",
    { id: "map-kind" },
    h(
      "option",
      { value: "chat", selected: !pairs },
      "chat: a user message and the assistant's answer",
    ),
    h(
      "option",
      { value: "pairs", selected: pairs },
      "preference pairs: a prompt, a chosen and a rejected answer",
    ),
  );
  const columnSelect = (role, fallback) => {
    const chosen = current[role] ?? columns[Math.min(fallback, columns.length - 1)];
    return h(
      "select",
      { id: `map-${role}` },
      columns.map((c) => h("option", { value: c, selected: c === chosen }, c)),
    );
  };
  const literal = current.system?.startsWith("=") ? current.system.slice(1) : "";
  const system = h(
    "select",
    { id: "map-system" },
    h("option", { value: NONE }, "(none)"),
    h("option", { value: LITERAL, selected: Boolean(literal) }, "a system prompt I type"),
    columns.map((c) => h("option", { value: c, selected: c === current.system }, `column ${c}`)),
  );
  const systemText = h("textarea", { id: "map-system-text", rows: 2 }, literal);
  const systemTextField = field(
    "System prompt",
    systemText,
    "Written before every example; {COLUMN} is filled in from the row.",
  );
  const selects = {
    user: columnSelect("user", 0),
    assistant: columnSelect("assistant", columns.length - 1), // the server's hint guesses the same
    prompt: columnSelect("prompt", 0),
    chosen: columnSelect("chosen", 1),
    rejected: columnSelect("rejected", 2),
  };
  const chatFields = h(
    "div",
    { class: "grid" },
    field("User message", selects.user),
    field("Assistant answer", selects.assistant),
  );
  const pairFields = h(
    "div",
    { class: "grid" },
    field("Prompt", selects.prompt),
    field("Chosen answer", selects.chosen),
    field("Rejected answer", selects.rejected),
  );
  const sync = () => {
    chatFields.hidden = kind.value !== "chat";
    pairFields.hidden = kind.value === "chat";
    systemTextField.hidden = system.value !== LITERAL;
  };
  kind.addEventListener("change", sync);
  system.addEventListener("change", sync);
  sync();
  const form = h(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        const roles = kind.value === "chat" ? CHAT_ROLES : PAIR_ROLES;
        const mapping = Object.fromEntries(roles.map((role) => [role, selects[role].value]));
        if (system.value === LITERAL && systemText.value.trim())
          mapping.system = `=${systemText.value.trim()}`;
        else if (system.value && system.value !== LITERAL) mapping.system = system.value;
        state.mapping = mapping;
        runCheck(state);
      },
    },
    h(
      "p",
      { class: "muted" },
      `The file's columns: ${columns.join(", ")}. Say which one holds what.`,
    ),
    field("Examples are", kind),
    field("System message", system),
    systemTextField,
    chatFields,
    pairFields,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Apply mapping"),
    ),
  );
  return h("section", { class: "card mapping" }, h("h2", {}, "Column mapping"), form);
}

// --- split into training and validation -----------------------------------------------------------

function splitCard(state) {
  const share = h("input", {
    id: "split-share",
    type: "number",
    min: 0.01,
    max: 0.99,
    step: 0.01,
    value: 0.1,
  });
  const seed = h("input", { id: "split-seed", type: "number", min: 0, step: 1, value: 0 });
  const out = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        fill(out, h("p", { class: "muted" }, "Splitting…"));
        try {
          const made = await api(`/v1/files/${encodeURIComponent(state.file.id)}/split`, {
            method: "POST",
            json: {
              validation: Number(share.value),
              seed: Number(seed.value),
              ...(state.mapping ? { mapping: state.mapping } : {}),
            },
            signal: state.signal,
          });
          const { training_file: train, validation_file: valid } = made;
          fill(
            out,
            h(
              "ul",
              { class: "made" },
              h(
                "li",
                { class: "made-train" },
                "Training: ",
                openLink(train),
                " ",
                h("code", {}, train.id),
                ` — ${train.n_examples} examples`,
              ),
              h(
                "li",
                { class: "made-validation" },
                "Validation: ",
                openLink(valid),
                " ",
                h("code", {}, valid.id),
                ` — ${valid.n_examples} examples`,
              ),
            ),
            h("div", { class: "actions" }, trainLink(train.id, valid.id)),
          );
        } catch (err) {
          if (!state.signal.aborted)
            fill(out, errorBox(err, { title: "Could not split the file" }));
        }
      },
    },
    h(
      "div",
      { class: "grid" },
      field("Validation share", share, "0.1 holds out 10% of the examples."),
      field("Seed", seed, "The same seed gives the same split."),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit" }, "Split into training and validation"),
    ),
  );
  return h(
    "section",
    { class: "card split" },
    h("h2", {}, "Split"),
    h(
      "p",
      { class: "muted" },
      "Two new files; exact copies stay on one side so validation never sees a training example.",
    ),
    form,
    out,
  );
}

// --- what the model is trained on -----------------------------------------------------------------

function tokensCard(state) {
  const index = h("input", { id: "tokens-index", type: "number", min: 0, step: 1, value: 0 });
  const out = h("div", { class: "trained-on", "aria-live": "polite" });
  const show = async () => {
    fill(out, h("p", { class: "muted" }, "Rendering…"));
    try {
      const body = await api(`/v1/files/${encodeURIComponent(state.file.id)}/render`, {
        method: "POST",
        json: {
          ...state.options(),
          index: Number(index.value) || 0,
          ...(state.mapping ? { mapping: state.mapping } : {}),
        },
        signal: state.signal,
      });
      index.max = body.n_examples - 1;
      fill(out, renderedExample(body));
    } catch (err) {
      if (!state.signal.aborted)
        fill(out, errorBox(err, { title: "Could not render the example" }));
    }
  };
  const form = h(
    "form",
    {
      onsubmit: (event) => {
        event.preventDefault();
        show();
      },
    },
    field("Example (from 0)", index, "Among the examples without errors."),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit" }, "Show what the model is trained on"),
    ),
  );
  return h(
    "section",
    { class: "card tokens-card" },
    h("h2", {}, "What the model is trained on"),
    h(
      "p",
      { class: "muted" },
      "One example rendered with the model's own chat template, exactly as training tokenizes it.",
    ),
    form,
    out,
  );
}

function renderedExample(body) {
  const total = body.sequences.reduce((n, s) => n + s.tokens.length, 0);
  return [
    h(
      "p",
      { class: "legend" },
      h("span", { class: "swatch", "aria-hidden": "true" }),
      " marked tokens carry the loss: the assistant's answers and their end-of-turn token. The rest is context the model reads but is not trained to write.",
    ),
    h(
      "p",
      { class: "muted small" },
      `Example ${body.index} of ${body.n_examples}${body.line ? `, line ${body.line} of the file` : ""}; ${total} tokens.`,
    ),
    body.sequences.map((s) => [
      body.sequences.length > 1 || s.name !== "example" ? h("h3", {}, s.name) : null,
      h("p", { class: "muted small" }, `${s.tokens.length} tokens, ${s.n_loss_tokens} with loss.`),
      h(
        "div",
        {
          class: "tokens",
          dataset: { sequence: s.name },
          role: "group",
          "aria-label": `${s.name}: tokens, loss tokens marked`,
        },
        s.tokens.map((t) => h("span", { class: t.loss ? "tok loss" : "tok" }, t.text)),
      ),
    ]),
  ];
}

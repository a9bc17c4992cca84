// New job (#/new?training_file=ID&validation_file=ID): a form built from the method's config
// (GET /v1/fine_tuning/methods), planned by the server on every change (POST
// /v1/fine_tuning/plans: "auto" resolved, the estimate, the same job as a CLI command and YAML),
// then launched with POST /v1/fine_tuning/jobs. The settings travel in tunesmith's `config`
// extension under the config's own keys, so the form, the flags and the YAML agree.
import { api, listAll } from "../api.js";
import { copy, errorBox, field, fill, fmtDuration, h, saveText } from "../ui.js";

// Fields the request carries outside `config`, each drawn by its own control.
const OWN_CONTROLS = new Set(["method", "data", "validation", "model", "suffix", "grader"]);
const PLAN_DELAY_MS = 400;

export async function render(root, { query, signal }) {
  const [methods, files, models] = await Promise.all([
    api("/v1/fine_tuning/methods", { signal }),
    listAll("/v1/files?purpose=fine-tune"),
    api("/v1/models", { signal }),
  ]);
  const byName = Object.fromEntries(methods.data.map((m) => [m.name, m]));
  const state = { method: byName.sft, controls: new Map(), planning: null };

  const methodSelect = h(
    "select",
    { name: "method" },
    methods.data.map((m) => h("option", { value: m.name }, `${m.name} (${m.data_kind} data)`)),
  );
  const methodHelp = h("p", { class: "muted small", id: "method-about" });
  const training = fileSelect(files, "Choose a training file…", query.get("training_file"));
  const validation = fileSelect(files, "None", query.get("validation_file"));
  const model = modelSelect(models.data);
  const suffix = h("input", { name: "suffix", maxLength: 64, placeholder: "e.g. orders" });
  const grader = h("textarea", {
    name: "grader",
    rows: 6,
    spellcheck: false,
    placeholder:
      '{"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "operation": "eq"}',
  });
  const graderField = field(
    "Grader (OpenAI grader JSON)",
    grader,
    "GRPO scores each sampled answer with it.",
  );
  const settings = h("div", { class: "settings" });
  const problem = h("div", { class: "problem" });
  const planBox = h("section", { class: "card plan", "aria-labelledby": "plan-title" });
  const planSaid = h("p", { class: "muted small", "aria-live": "polite" }); // a short line per plan
  const launch = h("button", { type: "submit", class: "primary", disabled: true }, "Launch job");

  const form = h(
    "form",
    { class: "newjob", novalidate: true, onsubmit: (e) => (e.preventDefault(), submit()) },
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Method"),
      field("Training method", methodSelect, null),
      methodHelp,
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Data and model"),
      files.length
        ? null
        : h(
            "p",
            { class: "warning" },
            "No training files yet: ",
            h("a", { href: "#/data" }, "upload one on the Data page"),
            ".",
          ),
      h(
        "div",
        { class: "row" },
        field("Training file", training, "An uploaded file (purpose fine-tune); the CLI's --data."),
        field(
          "Validation file",
          validation,
          "Optional; gives the validation curve. The CLI's --validation.",
        ),
      ),
      h(
        "div",
        { class: "row" },
        field(
          "Model",
          model,
          "The starting point: a built-in model, a fine-tuned model or a checkpoint.",
        ),
        field("Suffix", suffix, "Up to 64 characters in the new model's name."),
      ),
      graderField,
    ),
    settings,
    problem,
    planBox,
    h("div", { class: "actions" }, launch, planSaid),
  );
  root.append(
    h("h1", {}, "New fine-tuning job"),
    h(
      "p",
      { class: "muted" },
      "Every setting is one of ",
      h("code", {}, "tunesmith train"),
      "'s flags: the command and YAML below train the same job from a shell.",
    ),
    form,
  );

  function showMethod() {
    state.method = byName[methodSelect.value];
    methodHelp.textContent = state.method.description;
    graderField.hidden = state.method.name !== "grpo";
    state.controls = new Map();
    const groups = new Map();
    for (const spec of state.method.fields) {
      if (OWN_CONTROLS.has(spec.name)) continue;
      if (!groups.has(spec.group)) groups.set(spec.group, []);
      const control = settingControl(spec);
      state.controls.set(spec.name, { spec, control });
      groups.get(spec.group).push(field(label(spec), control, help(spec)));
    }
    fill(
      settings,
      [...groups].map(([group, fields]) =>
        h(
          "fieldset",
          { class: "card group" },
          h("legend", {}, group),
          h("div", { class: "grid" }, fields),
        ),
      ),
    );
  }

  /** The request body: OpenAI's fields, and each changed setting under `config`. */
  function body() {
    const config = { method: state.method.name };
    for (const { spec, control } of state.controls.values()) {
      const value = readValue(spec, control);
      if (value === undefined || same(value, spec.default)) continue;
      let target = config;
      for (const key of spec.path.slice(0, -1)) target = target[key] ??= {};
      target[spec.path.at(-1)] = value;
    }
    const method = { type: state.method.openai_type };
    if (method.type === "reinforcement") {
      method.reinforcement = { grader: parseJson(grader) ?? {} };
    }
    return {
      model: model.value,
      training_file: training.value,
      validation_file: validation.value || undefined,
      suffix: suffix.value.trim() || undefined,
      method,
      config,
    };
  }

  // Plan on every change, the newest request winning; a refused setting is shown in place.
  // A "change" that changes nothing is not one: leaving a field just typed into fires one, and
  // disabling Launch then would swallow the click that left the field.
  let timer = null;
  function planSoon() {
    if (JSON.stringify(body()) === state.plannedFor) return;
    clearTimeout(timer);
    launch.disabled = true;
    timer = setTimeout(plan, PLAN_DELAY_MS);
  }
  signal.addEventListener("abort", () => (clearTimeout(timer), state.planning?.abort()));

  async function plan() {
    state.planning?.abort();
    state.plannedFor = JSON.stringify(body());
    fill(problem);
    markInvalid(null);
    const missing = !training.value
      ? "a training file"
      : state.method.name === "grpo" && !grader.value.trim()
        ? "a grader"
        : null;
    if (missing) {
      fill(
        planBox,
        h("h2", { id: "plan-title" }, "Plan"),
        h(
          "p",
          { class: "muted" },
          `Give ${missing} to see the estimate, the command and the YAML.`,
        ),
      );
      return;
    }
    const mine = new AbortController();
    state.planning = mine;
    try {
      const planned = await api("/v1/fine_tuning/plans", {
        method: "POST",
        json: body(),
        signal: mine.signal,
      });
      if (mine.signal.aborted) return;
      showPlan(planned);
      planSaid.textContent = planned.estimate
        ? `Planned: ${planned.resolved.total_steps} steps, about ${fmtDuration(planned.estimate.seconds)}.`
        : `The data has ${planned.report.errors.length} error(s).`;
      launch.disabled = !planned.ok;
    } catch (err) {
      if (err?.name === "AbortError") return;
      showRefusal(err, "These settings were refused");
    }
  }

  function showPlan(p) {
    const rows = p.estimate ? estimateRows(p) : [];
    fill(
      planBox,
      h("h2", { id: "plan-title" }, "Plan"),
      p.ok ? null : dataErrors(p.report),
      rows.length ? h("dl", { class: "estimate", "aria-label": "Estimate" }, rows) : null,
      h("h3", {}, "The same job from the command line"),
      h("pre", { class: "command", "aria-label": "Command" }, h("code", {}, p.command)),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => copy(p.command) }, "Copy command"),
        h(
          "button",
          { type: "button", onclick: () => saveText(`${p.command}\n`, "train.sh") },
          "Download command",
        ),
      ),
      h("h3", {}, "As a config file"),
      h("pre", { class: "yaml", "aria-label": "YAML config" }, h("code", {}, p.yaml)),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => copy(p.yaml) }, "Copy YAML"),
        h(
          "button",
          { type: "button", onclick: () => saveText(p.yaml, "train.yaml", "application/yaml") },
          "Download YAML",
        ),
      ),
      p.config.grader
        ? h(
            "p",
            { class: "muted small" },
            "The command reads the grader from grader.json: save the grader JSON above under that name.",
          )
        : null,
    );
  }

  function showRefusal(err, title) {
    fill(problem, errorBox(err, { title }));
    markInvalid(err?.param);
    launch.disabled = true;
  }

  /** Point at the control a refusal names (`config.lora.r`, `training_file`, `suffix`). */
  function markInvalid(param) {
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    if (!param) return;
    const key = param.replace(/^config\./, "").replace(/^method\.\w+\.hyperparameters\./, "");
    const byRequest = {
      training_file: training,
      validation_file: validation,
      model,
      suffix,
      "method.reinforcement.grader": grader,
    };
    const named =
      byRequest[param] ||
      [...state.controls.values()].find((c) => c.spec.path.join(".") === key)?.control;
    named?.setAttribute("aria-invalid", "true");
  }

  async function submit() {
    launch.disabled = true;
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", json: body(), signal });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      if (err?.name === "AbortError") return;
      showRefusal(err, "The job was not created");
    }
  }

  methodSelect.addEventListener("change", () => (showMethod(), planSoon()));
  form.addEventListener("input", (e) => e.target !== methodSelect && planSoon());
  form.addEventListener("change", (e) => e.target !== methodSelect && planSoon());
  showMethod();
  await plan();
}

function label(spec) {
  return spec.name.replaceAll("_", " "); // the flag's words: "lora r" for --lora-r
}

function help(spec) {
  const shown =
    spec.default === null
      ? "none"
      : typeof spec.default === "object"
        ? JSON.stringify(spec.default)
        : String(spec.default);
  return `${spec.description} Default: ${shown}. Flag: ${spec.flag}.`.replace(/^ /, "");
}

function fileSelect(files, empty, chosen) {
  const select = h("select", {}, h("option", { value: "" }, empty));
  for (const f of files) {
    select.append(
      h("option", { value: f.id, selected: f.id === chosen }, `${f.filename} (${f.id})`),
    );
  }
  return select;
}

function modelSelect(models) {
  const groups = new Map();
  for (const m of models) {
    const kind = m.tunesmith?.kind || "model";
    if (!groups.has(kind)) groups.set(kind, []);
    groups.get(kind).push(h("option", { value: m.id, selected: !!m.tunesmith?.default }, m.id));
  }
  return h(
    "select",
    { name: "model" },
    [...groups].map(([kind, options]) =>
      h("optgroup", { label: kind.replaceAll("_", " ") }, options),
    ),
  );
}

/** The control a setting's kind needs; "auto" settings are text, so "auto" can be typed back. */
function settingControl(spec) {
  const shown = spec.default === null ? "" : spec.default;
  if (spec.kind === "bool") return h("input", { type: "checkbox", checked: !!spec.default });
  if (spec.kind === "choice") {
    return h(
      "select",
      {},
      spec.choices.map((c) => h("option", { value: c, selected: c === spec.default }, c)),
    );
  }
  if (spec.kind === "mapping" || spec.kind === "object") {
    const text = shown === "" ? "" : JSON.stringify(shown);
    return h(
      "textarea",
      { rows: 2, spellcheck: false, placeholder: '{"user": "question", "assistant": "answer"}' },
      text,
    );
  }
  if ((spec.kind === "int" || spec.kind === "float") && !spec.auto) {
    return h("input", {
      type: "number",
      step: spec.kind === "int" ? "1" : "any",
      value: String(shown),
    });
  }
  return h("input", {
    type: "text",
    value: Array.isArray(shown) ? shown.join(",") : String(shown),
    inputMode: spec.auto ? "decimal" : undefined,
  });
}

/** A control's value as the config takes it; undefined when left empty (the default). */
function readValue(spec, control) {
  if (spec.kind === "bool") return control.checked;
  const text = control.value.trim();
  if (text === "") return spec.default === null ? undefined : spec.default;
  if (spec.kind === "mapping" || spec.kind === "object") return parseJson(control);
  if (text === "auto" && spec.auto) return "auto";
  if (spec.kind === "int" || spec.kind === "float")
    return Number.isNaN(Number(text)) ? text : Number(text);
  if (spec.kind === "list")
    return spec.choices.includes(text)
      ? text
      : text
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
  return text;
}

/** JSON from a textarea; text that is not JSON goes as it is, so the server's refusal names the field. */
function parseJson(control) {
  const text = control.value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function estimateRows(p) {
  const e = p.estimate;
  const r = p.resolved;
  const cfg = p.config;
  const auto = (key) => (cfg[key] === "auto" ? " (auto)" : "");
  const pairs = [
    [
      "Examples",
      `${e.examples}${e.validation_examples ? ` + ${e.validation_examples} validation` : ""}`,
    ],
    ["Epochs", `${e.epochs}${auto("epochs")}`],
    ["Batch size", `${r.batch_size}${auto("batch_size")}`],
    ["Learning rate", `${r.learning_rate}${auto("learning_rate")}`],
    ["Steps", `${r.total_steps} (${r.steps_per_epoch} per epoch)`],
    ["Validation every", `${r.eval_steps} steps${auto("eval_steps")}`],
    ["Tokens per epoch", e.tokens.toLocaleString()],
    ["Billed tokens", e.billed_tokens.toLocaleString()],
    [
      "Time on this machine",
      `about ${fmtDuration(e.seconds)} (at ~${Math.round(e.tokens_per_second)} tokens/s)`,
    ],
  ];
  return pairs.map(([k, v]) =>
    h("div", {}, h("dt", {}, k), h("dd", { dataset: { estimate: k } }, v)),
  );
}

function dataErrors(report) {
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, `The data has ${report.errors.length} error(s); fix them before launching.`),
    h(
      "ul",
      {},
      report.errors
        .slice(0, 20)
        .map((e) =>
          h(
            "li",
            {},
            [e.line ? `line ${e.line}` : "file", e.field].filter(Boolean).join(", "),
            ": ",
            e.message,
          ),
        ),
    ),
    h("p", {}, h("a", { href: "#/data" }, "Open the Data page"), " to see each line."),
  );
}

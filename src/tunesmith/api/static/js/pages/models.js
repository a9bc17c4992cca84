// Models: every base model, fine-tuned model and checkpoint with where it came from and its
// size (the facts `tunesmith models list` prints, from the list's `tunesmith` extension), to
// chat with, compare, export or delete; and the exports, with their progress and files.
import { api, download } from "../api.js";
import { badge, errorBox, every, field, fill, fmtBytes, fmtTime, h, toast } from "../ui.js";

const FORMATS = {
  adapter: "Adapter (PEFT + GGUF LoRA)",
  merged: "Merged safetensors",
  gguf: "GGUF file",
  ollama: "Ollama (GGUF + Modelfile)",
};
const QUANTS = ["f32", "f16", "bf16", "q8_0", "q4_0"];
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export async function render(root, { signal }) {
  const problem = h("div", { "aria-live": "polite" });
  const list = h("div", { class: "table-wrap" });
  const exportForm = new ExportForm(() => exports.refresh());
  const exports = new Exports(signal);

  const refresh = async () => {
    const { data } = await api("/v1/models", { signal });
    fill(list, modelTable(data, { onExport: (id) => exportForm.choose(id), onDelete: remove }));
    exportForm.setModels(data);
  };
  const remove = async (id) => {
    if (!window.confirm(`Delete ${id}? Its adapter files go too; this cannot be undone.`)) return;
    fill(problem);
    try {
      await api(`/v1/models/${encodeURIComponent(id)}`, { method: "DELETE", signal });
    } catch (err) {
      fill(problem, errorBox(err, { title: `${id} was not deleted` }));
      return;
    }
    toast(`Deleted ${id}.`);
    await refresh();
  };

  root.append(
    h("h1", {}, "Models"),
    h(
      "p",
      { class: "muted" },
      "Base models, fine-tuned models and their checkpoints: what each was trained from, and its size.",
    ),
    problem,
    h(
      "section",
      { class: "card", "aria-labelledby": "models-list" },
      h("h2", { id: "models-list" }, "All models"),
      list,
    ),
    exportForm.el,
    exports.el,
  );
  await Promise.all([refresh(), exports.refresh()]);
}

function modelTable(models, { onExport, onDelete }) {
  return h(
    "table",
    { class: "models" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Model", "Kind", "Trained from", "Parameters", "Size", "Created", "Actions"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      models.map((m) => modelRow(m, { onExport, onDelete })),
    ),
  );
}

function modelRow(model, { onExport, onDelete }) {
  const info = model.tunesmith || {};
  const builtin = info.kind === "builtin";
  const reasonId = `why-${model.id.replace(/[^a-zA-Z0-9_-]/g, "-")}`;
  const del = builtin
    ? [
        h(
          "button",
          { type: "button", class: "danger", disabled: true, "aria-describedby": reasonId },
          "Delete",
        ),
        h(
          "small",
          { class: "muted", id: reasonId },
          " Built-in: ships with tunesmith, cannot be deleted.",
        ),
      ]
    : h("button", { type: "button", class: "danger", onclick: () => onDelete(model.id) }, "Delete");
  return h(
    "tr",
    { dataset: { model: model.id } },
    h(
      "th",
      { scope: "row" },
      h("code", { class: "name" }, model.id),
      info.default ? h("span", { class: "badge muted" }, "default") : null,
    ),
    h("td", { class: "kind" }, info.kind || "—"),
    h("td", { class: "origin" }, origin(info)),
    h("td", { class: "parameters" }, parameters(info)),
    h(
      "td",
      { class: "size" },
      info.kind ? (info.size_bytes === null ? "files missing" : fmtBytes(info.size_bytes)) : "—",
    ),
    h("td", {}, fmtTime(model.created)),
    h(
      "td",
      { class: "row-actions" },
      h(
        "a",
        { href: `#/playground?model=${encodeURIComponent(model.id)}`, class: "button" },
        "Chat",
      ),
      builtin
        ? null
        : h(
            "a",
            { href: `#/compare?fine_tuned_model=${encodeURIComponent(model.id)}`, class: "button" },
            "Compare",
          ),
      h("button", { type: "button", onclick: () => onExport(model.id) }, "Export"),
      del,
    ),
  );
}

function origin(info) {
  if (info.kind === "builtin") return "built-in";
  if (!info.base_model) return info.kind || "—";
  return [
    h("code", {}, info.base_model),
    info.job
      ? [" by ", h("a", { href: `#/jobs/${encodeURIComponent(info.job)}` }, info.job)]
      : null,
  ];
}

function parameters(info) {
  if (info.parameters === null || info.parameters === undefined) return "—";
  const n =
    info.parameters >= 1e6
      ? `${(info.parameters / 1e6).toFixed(1)}M`
      : `${(info.parameters / 1e3).toFixed(1)}K`;
  return info.adapter ? `+${n} LoRA` : n;
}

/** The form that queues an export of one model in one format. */
class ExportForm {
  constructor(onCreated) {
    this.model = h("select", { name: "model" });
    this.format = h(
      "select",
      { name: "format" },
      Object.entries(FORMATS).map(([v, label]) => h("option", { value: v }, label)),
    );
    this.quant = h(
      "select",
      { name: "quant" },
      h("option", { value: "" }, "the format's default"),
      QUANTS.map((q) => h("option", { value: q }, q)),
    );
    this.check = h("input", { type: "checkbox", checked: true });
    this.problem = h("div");
    const submit = h("button", { class: "primary", type: "submit" }, "Start export");
    this.el = h(
      "form",
      {
        class: "card",
        "aria-labelledby": "export-title",
        onsubmit: async (event) => {
          event.preventDefault();
          fill(this.problem);
          submit.disabled = true;
          try {
            const json = { format: this.format.value, check: this.check.checked };
            if (this.quant.value) json.quant = this.quant.value;
            const made = await api(`/v1/models/${encodeURIComponent(this.model.value)}/exports`, {
              method: "POST",
              json,
            });
            toast(`Export ${made.id} queued.`);
            onCreated();
          } catch (err) {
            fill(this.problem, errorBox(err, { title: "The export was not started" }));
          } finally {
            submit.disabled = false;
          }
        },
      },
      h("h2", { id: "export-title" }, "Export a model"),
      h(
        "div",
        { class: "grid" },
        field("Model to export", this.model),
        field("Format", this.format),
        field("Weights' type", this.quant),
      ),
      h(
        "div",
        { class: "field check" },
        h("label", {}, this.check, " Check it: load the export and compare its answers"),
      ),
      h("div", { class: "actions" }, submit),
      this.problem,
    );
  }

  setModels(models) {
    const chosen = this.model.value;
    fill(
      this.model,
      models.map((m) => h("option", { value: m.id, selected: m.id === chosen }, m.id)),
    );
  }

  choose(id) {
    this.model.value = id;
    this.el.scrollIntoView({ behavior: "smooth", block: "start" });
    this.format.focus();
  }
}

/** Past and running exports, polled while any is unfinished; files download with the key. */
class Exports {
  constructor(signal) {
    this.signal = signal;
    this.body = h("div", { class: "table-wrap", "aria-live": "polite" });
    this.el = h(
      "section",
      { class: "card", "aria-labelledby": "exports-title" },
      h("h2", { id: "exports-title" }, "Exports"),
      this.body,
    );
    this.polling = false;
  }

  /** Show the exports now, and keep polling while any of them is unfinished. */
  async refresh() {
    if (!(await this.load()) || this.polling) return;
    this.polling = true;
    const poll = new AbortController();
    this.signal.addEventListener("abort", () => poll.abort());
    poll.signal.addEventListener("abort", () => (this.polling = false));
    every(1500, async () => (await this.load()) || poll.abort(), poll.signal);
  }

  /** One look: the list, the newest event of each unfinished one; true while any is running. */
  async load() {
    const { data } = await api("/v1/exports?limit=20", { signal: this.signal });
    const events = await Promise.all(
      data.map((e) =>
        FINAL.has(e.status)
          ? null
          : api(`/v1/exports/${e.id}/events?limit=1`, { signal: this.signal }),
      ),
    );
    fill(
      this.body,
      data.length ? exportTable(data, events) : h("p", { class: "muted" }, "No exports yet."),
    );
    return data.some((e) => !FINAL.has(e.status));
  }
}

function exportTable(exports, events) {
  return h(
    "table",
    { class: "exports" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Export", "Model", "Format", "Status", "Created", "Files"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      exports.map((e, i) =>
        h(
          "tr",
          { dataset: { export: e.id } },
          h("th", { scope: "row" }, h("code", {}, e.id)),
          h("td", {}, h("code", { class: "name" }, e.config.model)),
          h("td", {}, e.config.format, e.config.quant ? ` (${e.config.quant})` : ""),
          h("td", {}, badge(e.status), progress(e, events[i])),
          h("td", {}, fmtTime(e.created_at)),
          h("td", { class: "files" }, files(e)),
        ),
      ),
    ),
  );
}

function progress(exp, events) {
  if (exp.error) return h("p", { class: "small error-text" }, exp.error.message);
  const last = events?.data?.[0];
  return last ? h("p", { class: "small muted" }, last.message) : null;
}

function files(exp) {
  const names = exp.result?.files || [];
  if (!names.length)
    return exp.status === "succeeded" ? "—" : h("span", { class: "muted" }, "when it succeeds");
  return h(
    "ul",
    { class: "file-list" },
    names.map((name) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link",
            "aria-label": `Download ${name}`,
            onclick: () =>
              download(`/v1/exports/${exp.id}/files/${encodeURIComponent(name)}`, name).catch(
                (err) => toast(err.message, "bad"),
              ),
          },
          name,
        ),
      ),
    ),
  );
}

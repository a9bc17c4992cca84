// Jobs: the live list (#/jobs) and one job (#/jobs/JOB_ID): status and reason, live curves from
// its metrics events, its events as they come (newest last), checkpoints and the final model with
// chat / compare / export, cancel / pause / resume where the status allows them, and the results
// CSV. Everything polls every 2 s while the page is open; a job's page stops once the job ended.
import { api, download } from "../api.js";
import { lineChart } from "../chart.js";
import { badge, errorBox, every, field, fill, fmtTime, h, toast } from "../ui.js";

const POLL_MS = 2000;
const PAGE = 100; // events and checkpoints per request
// The second curve: the score that says whether a run learns, per method (train/results.py).
const SCORES = [
  ["mean_token_accuracy", "Token accuracy"],
  ["reward_accuracy", "Reward accuracy"],
  ["reward", "Mean reward"],
];
const EXPORT_FORMATS = ["gguf", "merged", "adapter", "ollama"];

export async function render(root, { args, signal }) {
  if (args[0]) await detail(root, args[0], signal);
  else list(root, signal);
}

// --- the list -------------------------------------------------------------------------------------

function list(root, signal) {
  const rows = h("tbody");
  const summary = h("p", { class: "muted small", "aria-live": "polite" });
  root.append(
    h(
      "div",
      { class: "actions heading" },
      h("h1", {}, "Jobs"),
      h("a", { class: "button primary", href: "#/new" }, "New job"),
    ),
    summary,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "jobs" },
        h("caption", { class: "visually-hidden" }, "Fine-tuning jobs, newest first"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Job", "Status", "Model", "Created", "Fine-tuned model"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        rows,
      ),
    ),
  );
  let said = "";
  every(
    POLL_MS,
    async () => {
      const page = await api(`/v1/fine_tuning/jobs?limit=${PAGE}`, { signal });
      fill(
        rows,
        page.data.length
          ? page.data.map(jobRow)
          : h(
              "tr",
              {},
              h(
                "td",
                { colspan: 5, class: "muted" },
                "No jobs yet. ",
                h("a", { href: "#/new" }, "Start one"),
                ".",
              ),
            ),
      );
      const active = page.data.filter((j) =>
        ["validating_files", "queued", "running"].includes(j.status),
      ).length;
      const text = `${page.data.length}${page.has_more ? "+" : ""} job(s), ${active} in progress.`;
      if (text !== said) summary.textContent = said = text; // only changes are announced
    },
    signal,
  );
}

function jobRow(job) {
  return h(
    "tr",
    { dataset: { job: job.id } },
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id)),
    h("td", {}, badge(job.status)),
    h("td", { class: "name" }, job.model),
    h("td", {}, fmtTime(job.created_at)),
    h("td", { class: "name" }, job.fine_tuned_model || "—"),
  );
}

// --- one job --------------------------------------------------------------------------------------

async function detail(root, id, signal) {
  const path = `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;
  const [controls, first] = await Promise.all([
    api("/v1/fine_tuning/controls", { signal }),
    api(path, { signal }),
  ]);
  const final = new Set(controls.final);
  const view = jobView(root, first);
  const seen = new Set();
  const metrics = [];
  let job = first;
  let failure = null; // the failed job's error event, once found
  let lineShown = false;

  const poll = new AbortController();
  signal.addEventListener("abort", () => poll.abort());
  let lastTick = false;

  async function refresh() {
    job = await api(path, { signal });
    const fresh = await newEvents(path, seen, signal);
    for (const event of fresh) {
      seen.add(event.id);
      if (event.type === "metrics") metrics.push(event.data);
      if (event.level === "error" && event.data?.line) failure = event;
    }
    const checkpoints = await api(`${path}/checkpoints?limit=${PAGE}`, { signal });
    view.update(job, fresh, metrics, checkpoints.data, controls);
    if (job.status === "failed" && failure && !lineShown) {
      lineShown = true;
      await view.showLine(failure, signal);
    }
  }

  view.onControl = async (action) => {
    try {
      await api(`${path}/${action}`, { method: "POST", signal });
      toast(
        `Job ${action === "cancel" ? "cancelled" : action === "pause" ? "paused" : "resumed"}.`,
      );
      await refresh();
    } catch (err) {
      if (err?.name !== "AbortError")
        fill(view.problem, errorBox(err, { title: `Could not ${action} the job` }));
    }
  };

  every(
    POLL_MS,
    async () => {
      await refresh();
      // one more refresh after the job ended (its last events and checkpoints), then stop
      if (final.has(job.status)) {
        if (lastTick) poll.abort();
        lastTick = true;
      }
    },
    poll.signal,
  );
}

/** Events newer than any in `seen`, oldest first: newest-first pages until a known id. */
async function newEvents(path, seen, signal) {
  const fresh = [];
  let after = null;
  for (;;) {
    const page = await api(`${path}/events?limit=${PAGE}${after ? `&after=${after}` : ""}`, {
      signal,
    });
    for (const event of page.data) {
      if (seen.has(event.id)) return fresh.reverse();
      fresh.push(event);
    }
    if (!page.has_more || !page.data.length) return fresh.reverse();
    after = page.data.at(-1).id;
  }
}

function jobView(root, job) {
  const status = h("span", { class: "status", "aria-live": "polite" });
  const facts = h("dl", { class: "facts" });
  const reason = h("div", { class: "reason" });
  const problem = h("div");
  const buttons = {
    cancel: h(
      "button",
      { type: "button", class: "danger", onclick: () => view.onControl("cancel") },
      "Cancel",
    ),
    pause: h("button", { type: "button", onclick: () => view.onControl("pause") }, "Pause"),
    resume: h("button", { type: "button", onclick: () => view.onControl("resume") }, "Resume"),
  };
  const finalModel = h("section", {
    class: "card",
    hidden: true,
    "aria-labelledby": "final-title",
  });
  const results = h("div", { class: "actions" });
  const lossChart = curve("Loss", "loss");
  const scoreChart = curve("Token accuracy", "score");
  const checkpoints = h("div", { class: "table-wrap" });
  const events = h("ol", {
    class: "events",
    role: "log",
    "aria-live": "polite",
    "aria-label": "Events, newest last",
  });
  let scoreKey = null;
  let lastCheckpoints = "";

  root.append(
    h("p", { class: "small" }, h("a", { href: "#/jobs" }, "← All jobs")),
    h("h1", {}, "Job ", h("code", {}, job.id)),
    h(
      "section",
      { class: "card", "aria-labelledby": "status-title" },
      h("h2", { id: "status-title" }, "Status ", status),
      reason,
      facts,
      h(
        "div",
        { class: "actions", role: "group", "aria-label": "Job controls" },
        Object.values(buttons),
      ),
      problem,
      results,
    ),
    finalModel,
    h(
      "section",
      { class: "card", "aria-labelledby": "curves-title" },
      h("h2", { id: "curves-title" }, "Curves"),
      h("div", { class: "row curves" }, lossChart.figure, scoreChart.figure),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "ckpt-title" },
      h("h2", { id: "ckpt-title" }, "Checkpoints"),
      checkpoints,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "events-title" },
      h("h2", { id: "events-title" }, "Events"),
      events,
    ),
  );

  const view = {
    problem,
    onControl: null,
    update(job, fresh, metrics, ckpts, controls) {
      if (status.dataset.status !== job.status) fill(status, badge(job.status));
      status.dataset.status = job.status;
      fillReason(reason, job, metrics);
      fill(facts, factRows(job));
      for (const [name, button] of Object.entries(buttons))
        button.disabled = !controls[name].includes(job.status);
      fill(
        results,
        job.result_files?.length
          ? h(
              "button",
              {
                type: "button",
                onclick: () => download(`/v1/files/${job.result_files[0]}/content`, "results.csv"),
              },
              "Download results CSV",
            )
          : null,
      );
      if (job.fine_tuned_model && finalModel.hidden) {
        finalModel.hidden = false;
        fill(
          finalModel,
          h("h2", { id: "final-title" }, "Fine-tuned model"),
          h("p", {}, h("code", { class: "name" }, job.fine_tuned_model)),
          modelActions(job.fine_tuned_model),
        );
      }
      scoreKey ??= SCORES.find(([key]) => metrics.some((m) => `train_${key}` in m)) ?? null;
      lossChart.update(
        metrics.map((m) => ({
          step: m.step,
          training: m.train_loss,
          validation: m.full_valid_loss ?? m.valid_loss,
        })),
      );
      if (scoreKey) {
        const [key, title] = scoreKey;
        scoreChart.title(title);
        scoreChart.update(
          metrics.map((m) => ({
            step: m.step,
            training: m[`train_${key}`],
            validation: m[`full_valid_${key}`] ?? m[`valid_${key}`],
          })),
        );
      }
      const names = ckpts.map((c) => c.id).join();
      if (names !== lastCheckpoints) {
        lastCheckpoints = names;
        fill(
          checkpoints,
          ckpts.length ? checkpointTable(ckpts) : h("p", { class: "muted" }, "None yet."),
        );
      }
      for (const event of fresh) events.append(eventItem(event));
      if (fresh.length) events.scrollTop = events.scrollHeight;
    },
    async showLine(event, signal) {
      const { file_id: file, line } = event.data;
      const box = reason.querySelector(".error");
      try {
        const page = await api(
          `/v1/files/${encodeURIComponent(file)}/lines?start=${line}&count=1`,
          { signal },
        );
        box?.append(
          h("p", {}, `Line ${line} of file ${file}:`),
          h("pre", { class: "data-line" }, page.data[0]?.text ?? ""),
        );
      } catch (err) {
        if (err?.name !== "AbortError")
          box?.append(
            h(
              "p",
              { class: "muted" },
              `Line ${line} of file ${file} (the line could not be read: ${err.message}).`,
            ),
          );
      }
    },
  };
  return view;
}

function fillReason(reason, job, metrics) {
  if (job.status === "failed") {
    if (reason.dataset.status === "failed") return; // keeps the data line once shown
    reason.dataset.status = "failed";
    fill(
      reason,
      h(
        "div",
        { class: "error", role: "alert" },
        h("strong", {}, "The job failed"),
        h("p", {}, job.error?.message || "No reason was recorded."),
        job.error?.param
          ? h("p", { class: "muted" }, "Field: ", h("code", {}, job.error.param))
          : null,
        job.error?.code
          ? h("p", { class: "muted" }, "Code: ", h("code", {}, job.error.code))
          : null,
      ),
    );
    return;
  }
  reason.dataset.status = job.status;
  const last = metrics.at(-1);
  const progress =
    job.status === "running" && last ? `step ${last.step} of ${last.total_steps}` : null;
  const eta = job.estimated_finish ? `estimated finish ${fmtTime(job.estimated_finish)}` : null;
  fill(
    reason,
    h("p", {}, [job.status.replace("_", " "), progress, eta].filter(Boolean).join(" · ")),
  );
}

function factRows(job) {
  const hp = job.method?.[job.method.type]?.hyperparameters || job.hyperparameters || {};
  const pairs = [
    ["Model", job.model],
    ["Method", job.method?.type],
    ["Created", fmtTime(job.created_at)],
    ["Finished", fmtTime(job.finished_at)],
    ["Epochs", hp.n_epochs],
    ["Batch size", hp.batch_size],
    ["Trained tokens", job.trained_tokens?.toLocaleString()],
    ["Training file", job.training_file],
    ["Validation file", job.validation_file],
  ];
  return pairs
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v))));
}

/** A chart with its point counts in data-points (for tests) and a text summary (for screen readers). */
function curve(title, kind) {
  const plotEl = h("div", { class: "chart" });
  const caption = h("figcaption", { class: "visually-hidden" }, `${title}: no points yet.`);
  const figure = h(
    "figure",
    { class: "curve", dataset: { curve: kind, points: "0", validPoints: "0" } },
    plotEl,
    caption,
  );
  let chart = null;
  let name = title;
  return {
    figure,
    title(text) {
      name = text;
    },
    update(rows) {
      chart ??= lineChart(plotEl, { title: name, names: ["training", "validation"] });
      chart.update(rows);
      const train = rows.filter((r) => r.training != null);
      const valid = rows.filter((r) => r.validation != null);
      figure.dataset.points = String(train.length);
      figure.dataset.validPoints = String(valid.length);
      const fmt = (v) => (typeof v === "number" ? v.toFixed(3) : "—");
      caption.textContent = `${name}: ${train.length} training and ${valid.length} validation points; latest training ${fmt(train.at(-1)?.training)}, validation ${fmt(valid.at(-1)?.validation)}.`;
    },
  };
}

function eventItem(event) {
  return h(
    "li",
    { class: `level-${event.level}`, dataset: { type: event.type } },
    h("time", { class: "muted small" }, new Date(event.created_at * 1000).toLocaleTimeString()),
    " ",
    event.message,
  );
}

function checkpointTable(ckpts) {
  return h(
    "table",
    { class: "checkpoints" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Step", "Checkpoint", "Train loss", "Valid loss", "Actions"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      ckpts.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, String(c.step_number)),
          h("td", { class: "name" }, h("code", {}, c.fine_tuned_model_checkpoint)),
          h("td", {}, num(c.metrics?.train_loss)),
          h("td", {}, num(c.metrics?.full_valid_loss ?? c.metrics?.valid_loss)),
          h("td", {}, modelActions(c.fine_tuned_model_checkpoint)),
        ),
      ),
    ),
  );
}

function num(value) {
  return typeof value === "number" ? value.toFixed(3) : "—";
}

/** Chat, compare and export for a fine-tuned model or checkpoint. */
function modelActions(name) {
  const q = encodeURIComponent(name);
  const format = h(
    "select",
    {},
    EXPORT_FORMATS.map((f) => h("option", { value: f }, f)),
  );
  const state = h("span", { class: "small", "aria-live": "polite" });
  const exportButton = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        exportButton.disabled = true;
        try {
          const job = await api(`/v1/models/${q}/exports`, {
            method: "POST",
            json: { format: format.value },
          });
          fill(
            state,
            `Export ${job.id} ${job.status}; `,
            h("a", { href: "#/models" }, "follow it on Models"),
            ".",
          );
        } catch (err) {
          fill(state, errorBox(err, { title: "Export refused" }));
        } finally {
          exportButton.disabled = false;
        }
      },
    },
    "Export",
  );
  return h(
    "div",
    { class: "actions model-actions", role: "group", "aria-label": `Actions for ${name}` },
    h("a", { class: "button", href: `#/playground?model=${q}` }, "Chat"),
    h("a", { class: "button", href: `#/compare?fine_tuned_model=${q}` }, "Compare"),
    field("Export format", format),
    exportButton,
    state,
  );
}

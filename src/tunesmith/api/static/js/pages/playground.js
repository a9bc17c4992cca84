// Playground: chat with any model, or with two or three side by side. Each column streams its
// own answer (the engine batches the concurrent requests), keeps its own conversation, and
// shows its own token count and time. Everything decoding runs on the server; this page only
// sends the request a client of the API would send.
import { api, stream } from "../api.js";
import { errorBox, field, fill, h } from "../ui.js";

const COLUMNS = 3; // the model and up to two others beside it

export async function render(root, { query, signal }) {
  const { data: models } = await api("/v1/models", { signal });
  const wanted = query.get("model");

  const pickers = Array.from({ length: COLUMNS }, (_, i) =>
    modelSelect(models, i ? "" : wanted, i),
  );
  const system = h("textarea", { rows: 2, placeholder: "You are a helpful assistant." });
  const temperature = h("input", {
    type: "number",
    step: "0.1",
    value: "0.7",
    inputMode: "decimal",
  });
  const maxTokens = h("input", { type: "number", step: "1", value: "128", inputMode: "numeric" });
  const jsonMode = h("input", { type: "checkbox" });
  const tools = h("textarea", {
    rows: 4,
    class: "mono",
    placeholder: '[{"type": "function", "function": {"name": "get_weather", "parameters": {…}}}]',
  });
  const message = h("textarea", { rows: 3, required: true });
  const send = h("button", { class: "primary", type: "submit" }, "Send");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const clear = h("button", { type: "button", class: "link" }, "New conversation");
  const problem = h("div");
  const board = h("div", { class: "columns" });

  let columns = [];
  let running = null; // the AbortController of the answers being streamed

  const layout = () => {
    running?.abort(); // a new set of columns starts a new conversation
    const names = pickers.map((p) => p.value).filter(Boolean);
    columns = names.map((name) => new Column(name));
    fill(
      board,
      columns.map((c) => c.el),
    );
    board.dataset.count = String(columns.length);
  };
  for (const picker of pickers) picker.addEventListener("change", layout);
  clear.addEventListener("click", layout);
  stop.addEventListener("click", () => running?.abort());
  signal.addEventListener("abort", () => running?.abort());

  const form = h(
    "form",
    {
      class: "card controls",
      novalidate: true, // the server checks the values, and says what is wrong with them
      onsubmit: async (event) => {
        event.preventDefault();
        fill(problem);
        const text = message.value.trim();
        if (!text || running) return;
        let settings;
        try {
          settings = requestSettings({ system, temperature, maxTokens, jsonMode, tools });
        } catch (err) {
          fill(problem, errorBox(err, { title: "The tools are not valid JSON" }));
          return;
        }
        running = new AbortController();
        send.disabled = true;
        stop.disabled = false;
        message.value = "";
        const answers = columns.map((c) => c.ask(text, settings, running.signal));
        await Promise.allSettled(answers);
        running = null;
        send.disabled = false;
        stop.disabled = true;
      },
    },
    h(
      "div",
      { class: "grid models" },
      field("Model", pickers[0]),
      field("Side by side with", pickers[1], "Another model or checkpoint, answering at once."),
      field("And with", pickers[2]),
    ),
    h(
      "details",
      { class: "settings" },
      h("summary", {}, "System prompt, sampling, JSON mode, tools"),
      field("System prompt", system),
      h(
        "div",
        { class: "grid" },
        field("Temperature", temperature, "0 answers the same each time; up to 2."),
        field("Max tokens", maxTokens, "The answer stops here (finish: length)."),
      ),
      h(
        "div",
        { class: "field check" },
        h("label", {}, jsonMode, " JSON mode (answer is a JSON object)"),
      ),
      field("Tools (JSON)", tools, "OpenAI tool definitions; the model may call them."),
    ),
    field("Message", message, "Ctrl+Enter sends."),
    h("div", { class: "actions" }, send, stop, clear),
    problem,
  );
  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  root.append(
    h("h1", {}, "Playground"),
    h(
      "p",
      { class: "muted" },
      "Chat with a base model, a fine-tuned model or a checkpoint — or with several at once.",
    ),
    form,
    board,
  );
  layout();
}

function modelSelect(models, selected, index) {
  const select = h("select", { name: `model-${index}` });
  if (index) select.append(h("option", { value: "" }, "— none —"));
  for (const m of models) {
    const kind = m.tunesmith?.kind;
    const label = kind && kind !== "builtin" ? `${m.id} (${kind})` : m.id;
    select.append(h("option", { value: m.id, selected: m.id === selected }, label));
  }
  if (selected && !models.some((m) => m.id === selected)) {
    select.prepend(h("option", { value: selected, selected: true }, `${selected} (not listed)`));
  }
  return select;
}

/** The request fields the controls set; throws when the tools box is not JSON. */
function requestSettings({ system, temperature, maxTokens, jsonMode, tools }) {
  const out = { stream_options: { include_usage: true } };
  if (system.value.trim()) out.system = system.value.trim();
  if (temperature.value !== "") out.temperature = Number(temperature.value);
  if (maxTokens.value !== "") out.max_tokens = Number(maxTokens.value);
  if (jsonMode.checked) out.response_format = { type: "json_object" };
  if (tools.value.trim()) out.tools = JSON.parse(tools.value);
  return out;
}

/** One model's conversation: its messages, its bubbles, its last answer's numbers. */
class Column {
  constructor(model) {
    this.model = model;
    this.messages = [];
    this.log = h("div", {
      class: "chat",
      "aria-live": "polite",
      "aria-label": `${model} conversation`,
    });
    this.stats = h("p", { class: "small muted stats" });
    this.el = h(
      "section",
      { class: "card column", "aria-label": model, dataset: { model } },
      h("h2", {}, model),
      this.log,
      this.stats,
    );
  }

  async ask(text, settings, signal) {
    const { system, ...fields } = settings;
    this.messages.push({ role: "user", content: text });
    this.log.append(h("div", { class: "bubble user" }, text));
    const body = h("span", { class: "answer" });
    const calls = h("div", { class: "calls" });
    const bubble = h(
      "div",
      { class: "bubble assistant", dataset: { state: "streaming" } },
      body,
      calls,
    );
    this.log.append(bubble);
    fill(this.stats, "Waiting for the model…");

    const started = performance.now();
    const toolCalls = [];
    let content = "";
    let tokens = 0;
    let usage = null;
    let finish = null;
    let firstToken = null;
    const messages = system
      ? [{ role: "system", content: system }, ...this.messages]
      : this.messages;
    try {
      for await (const chunk of stream(
        "/v1/chat/completions",
        { model: this.model, messages, ...fields },
        signal,
      )) {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const delta = choice.delta || {};
        if (delta.content) {
          firstToken ??= performance.now();
          content += delta.content;
          tokens += 1;
          body.textContent = content;
        }
        for (const call of delta.tool_calls || []) mergeCall(toolCalls, call);
        if (delta.tool_calls) fill(calls, toolCalls.map(showCall));
        if (choice.finish_reason) finish = choice.finish_reason;
        this.showStats(
          usage?.completion_tokens ?? tokens,
          started,
          firstToken,
          finish ?? "streaming",
        );
      }
    } catch (err) {
      if (err?.name === "AbortError") {
        finish = "stopped";
      } else {
        this.messages.pop(); // the turn did not happen: sending again starts from before it
        bubble.replaceWith(errorBox(err, { title: `${this.model} refused the request` }));
        fill(this.stats);
        return;
      }
    }
    const reply = { role: "assistant", content: content || null };
    if (toolCalls.length) reply.tool_calls = toolCalls;
    this.messages.push(reply);
    bubble.dataset.state = "done";
    bubble.dataset.finish = finish ?? "stop";
    this.showStats(usage?.completion_tokens ?? tokens, started, firstToken, finish ?? "stop");
  }

  showStats(tokens, started, firstToken, finish) {
    const seconds = (performance.now() - started) / 1000;
    const wait = firstToken ? ` (first after ${((firstToken - started) / 1000).toFixed(1)} s)` : "";
    fill(
      this.stats,
      h("span", { class: "tokens-count" }, `${tokens} tokens`),
      ` · ${seconds.toFixed(1)} s${wait} · finish: `,
      h("span", { class: "finish" }, finish),
    );
  }
}

/** Streamed tool calls arrive in pieces keyed by index: the head first, then argument text. */
function mergeCall(calls, delta) {
  const call = (calls[delta.index ?? calls.length] ??= {
    id: null,
    type: "function",
    function: { name: "", arguments: "" },
  });
  if (delta.id) call.id = delta.id;
  if (delta.function?.name) call.function.name += delta.function.name;
  if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
}

function showCall(call) {
  return h(
    "div",
    { class: "tool-call" },
    h("span", { class: "small muted" }, "Tool call "),
    h("code", {}, call.function.name),
    h("pre", {}, call.function.arguments),
  );
}

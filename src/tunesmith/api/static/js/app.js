// The page's shell: the router (#/page/arg?query), the key prompt, and the page lifecycle.
// Each page module exports `render(root, {args, query, signal})`; `signal` aborts when the user
// leaves the page, which stops its polling and streams, so a hidden page costs nothing.
import { ApiError, api, getKey, setKey } from "./api.js";
import { errorBox, fill, h } from "./ui.js";

const PAGES = {
  data: () => import("./pages/data.js"),
  new: () => import("./pages/newjob.js"),
  jobs: () => import("./pages/jobs.js"),
  compare: () => import("./pages/compare.js"),
  playground: () => import("./pages/playground.js"),
  models: () => import("./pages/models.js"),
};

const main = document.getElementById("main");
let current = null; // the AbortController of the page on screen

function parseHash() {
  const [path, queryString = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page = "data", ...args] = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page, args, query: new URLSearchParams(queryString) };
}

/** Each page's own stylesheet (css/PAGE.css), linked once when the page is first opened. */
function pageStyles(page) {
  const href = `/ui/css/${page}.css`;
  if (document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(h("link", { rel: "stylesheet", href }));
}

async function route() {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  const { page, args, query } = parseHash();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const load = PAGES[page];
  if (!load) {
    fill(main, errorBox(new Error(`There is no page "${page}".`), { title: "Not found" }));
    return;
  }
  fill(main, h("p", { class: "muted" }, "Loading…"));
  pageStyles(page);
  try {
    const module = await load();
    if (signal.aborted) return;
    const root = h("div", { class: "page", dataset: { page } });
    fill(main, root);
    await module.render(root, { args, query, signal });
  } catch (err) {
    if (signal.aborted || err?.name === "AbortError") return;
    if (err instanceof ApiError && err.status === 401) return; // the key prompt is showing
    console.error(err);
    fill(main, errorBox(err));
  }
}

/** Ask for the key; the page comes back once the server accepts it. */
function askForKey(message) {
  current?.abort();
  const input = h("input", {
    id: "api-key",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const problem = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (event) => {
        event.preventDefault();
        setKey(input.value.trim());
        try {
          await api("/v1/files?limit=1"); // the cheapest call that needs the key
        } catch (err) {
          setKey("");
          fill(problem, errorBox(err, { title: "That key was refused" }));
          return;
        }
        document.getElementById("signout").hidden = false;
        route();
      },
    },
    h("h1", {}, "API key"),
    h("p", {}, message),
    h("label", { for: "api-key" }, "Key"),
    input,
    h("p", { class: "muted" }, "It is kept in this tab only, and sent with each request."),
    h("button", { class: "primary", type: "submit" }, "Continue"),
    problem,
  );
  fill(main, form);
  input.focus();
}

window.addEventListener("tunesmith:unauthorized", () => {
  if (document.getElementById("api-key")) return; // the prompt is up: it shows its own error
  askForKey(
    getKey()
      ? "The server refused the key this tab had. Enter a valid one."
      : "This server needs an API key (one of those given with --api-key or TUNESMITH_API_KEYS).",
  );
});

document.getElementById("signout").addEventListener("click", () => {
  setKey("");
  document.getElementById("signout").hidden = true;
  askForKey("The key is forgotten. Enter one to go on.");
});

async function start() {
  try {
    await api("/v1/files?limit=1"); // the cheapest call that needs the key
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the prompt is up
    fill(main, errorBox(err, { title: "The server did not answer" }));
    return;
  }
  document.getElementById("signout").hidden = !getKey();
  route();
}

window.addEventListener("hashchange", route);

start();

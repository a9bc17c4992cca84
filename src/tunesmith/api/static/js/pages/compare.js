// placeholder: filled by the page owner
import { h } from "../ui.js";

export async function render(root) {
  root.append(h("h1", {}, "compare"), h("p", { class: "muted" }, "Not built yet."));
}

// A project: its graph of node types with record counts, toggling between
// the types that hold data and the whole dictionary; a box opens browsing.

import { h, fill } from "../dom.js";
import { dictionary } from "../api.js";
import { countedTypes, countsFor } from "../counts.js";
import { drawGraph } from "../graph.js";

export async function render(main, session, projectId) {
  const nodes = await dictionary();
  const types = await countedTypes();
  const counts = { program: 1, project: 1, ...(await countsFor([projectId], types))[projectId] };
  const withData = Object.keys(nodes).filter((n) => counts[n] > 0);
  const holder = h("div", { class: "graph-holder" });
  const toggle = h("input", { type: "checkbox", id: "full-graph", role: "switch" });
  const draw = () => {
    const names = toggle.checked ? Object.keys(nodes) : withData;
    fill(holder, drawGraph(nodes, names, counts, (n) => `#/browse/${encodeURIComponent(projectId)}/${n}`));
  };
  toggle.addEventListener("change", draw);
  const total = types.reduce((sum, t) => sum + (counts[t] || 0), 0);
  fill(
    main,
    h("h1", {}, projectId),
    h(
      "div",
      { class: "actions" },
      h("span", {}, `${total.toLocaleString()} records in ${withData.length - 2} node types`),
      h("a", { class: "button secondary", href: `#/browse/${encodeURIComponent(projectId)}` }, "Browse records"),
      session.can("create", projectId) || session.can("update", projectId)
        ? h("a", { class: "button secondary", href: `#/submit/${encodeURIComponent(projectId)}` }, "Submit data")
        : null,
    ),
    h("label", { class: "switch", for: "full-graph" }, toggle, " Show the full dictionary (not only node types with data)"),
    holder,
  );
  draw();
}

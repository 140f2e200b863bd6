// Projects: every project the user may read, each with a bar chart of its
// record counts per node type (all counts come from one request).

import { h, fill } from "../dom.js";
import { readableProjects, countedTypes, countsFor } from "../counts.js";

export async function render(main) {
  const projects = await readableProjects();
  const types = await countedTypes();
  const counts = await countsFor(
    projects.map((p) => p.project_id),
    types,
  );
  fill(
    main,
    h("h1", {}, "Projects"),
    projects.length
      ? h("div", { class: "grid" }, projects.map((p) => projectCard(p, counts[p.project_id])))
      : h("p", {}, "You cannot read any project yet. Ask an administrator for access, or create a program and project through the API."),
  );
}

function projectCard(project, counts) {
  const rows = Object.entries(counts)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...rows.map(([, n]) => n));
  const total = rows.reduce((sum, [, n]) => sum + n, 0);
  return h(
    "article",
    { class: "card project-card", dataset: { project: project.project_id } },
    h("h2", {}, h("a", { href: `#/project/${encodeURIComponent(project.project_id)}` }, project.project_id)),
    h("p", {}, `${total.toLocaleString()} records`),
    rows.length
      ? h(
          "table",
          { class: "bars", "aria-label": `Records per node type in ${project.project_id}` },
          h(
            "tbody",
            {},
            rows.map(([type, n]) =>
              h(
                "tr",
                {},
                h("th", { scope: "row" }, h("a", { href: `#/browse/${encodeURIComponent(project.project_id)}/${type}` }, type)),
                h("td", {}, h("span", { class: "bar", style: `width:${Math.max(2, (100 * n) / max)}%` })),
                h("td", { class: "num" }, n.toLocaleString()),
              ),
            ),
          ),
        )
      : h("p", { class: "hint" }, "No records yet."),
  );
}

// Dictionary: node types by category, each with its properties (type,
// required, description, enum values) and links, plus template downloads.

import { h, fill } from "../dom.js";
import { dictionary, linksOf } from "../api.js";

export async function render(main) {
  const nodes = await dictionary();
  const byCategory = {};
  for (const [name, schema] of Object.entries(nodes)) (byCategory[schema.category || "uncategorized"] ??= []).push(name);
  fill(
    main,
    h("h1", {}, "Data dictionary"),
    h(
      "p",
      { class: "hint" },
      `${Object.keys(nodes).length} node types. `,
      h("a", { href: "/api/v0/submission/template?format=tsv", download: "templates.tar.gz" }, "Download all TSV templates"),
    ),
    Object.keys(byCategory)
      .sort()
      .map((category) =>
        h(
          "section",
          { class: "category" },
          h("h2", {}, category.replaceAll("_", " ")),
          byCategory[category].sort().map((name) => nodeDetails(name, nodes[name])),
        ),
      ),
  );
}

function nodeDetails(name, schema) {
  const required = new Set(schema.required || []);
  const links = linksOf(schema);
  const linkNames = new Set(links.map((l) => l.name));
  const properties = Object.entries(schema.properties).filter(([p]) => !linkNames.has(p));
  return h(
    "details",
    { class: "node", id: `node-${name}` },
    h("summary", {}, h("strong", {}, schema.title || name), " ", h("code", {}, name), schema.description ? ` — ${schema.description}` : ""),
    h(
      "p",
      { class: "actions" },
      h("a", { class: "button secondary", href: `/api/v0/submission/template/${name}?format=tsv`, download: `${name}_template.tsv` }, "TSV template"),
      h("a", { class: "button secondary", href: `/api/v0/submission/template/${name}?format=json`, download: `${name}_template.json` }, "JSON template"),
    ),
    links.length
      ? h(
          "p",
          {},
          "Links: ",
          links.map((l, i) => [
            i ? "; " : "",
            h("code", {}, l.name),
            " → ",
            h("a", { href: `#/dictionary`, onclick: () => document.getElementById(`node-${l.target_type}`)?.setAttribute("open", "") }, l.target_type),
            ` (${l.multiplicity || ""}${l.required ? ", required" : ""})`,
          ]),
        )
      : null,
    h(
      "table",
      { class: "data" },
      h("thead", {}, h("tr", {}, ["Property", "Type", "Required", "Description"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        properties.map(([property, definition]) =>
          h(
            "tr",
            {},
            h("td", {}, h("code", {}, property)),
            h("td", {}, typeOf(definition)),
            h("td", {}, required.has(property) ? "yes" : ""),
            h("td", {}, definition.description || definition.term?.description || ""),
          ),
        ),
      ),
    ),
  );
}

function typeOf(definition) {
  if (definition.enum) return `one of: ${definition.enum.join(", ")}`;
  if (definition.type) return [].concat(definition.type).join(" or ");
  if (definition.oneOf || definition.anyOf) {
    return (definition.oneOf || definition.anyOf).map(typeOf).filter(Boolean).join(" or ");
  }
  if (definition.items) return `array of ${typeOf(definition.items)}`;
  return "";
}

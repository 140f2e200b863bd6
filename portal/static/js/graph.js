// The project graph: the dictionary's node types as an SVG drawing, one row
// per level (program on top, each type one row below the lowest type it
// links to), boxes showing record counts, each box a link to browse it.

import { svg } from "./dom.js";
import { linksOf } from "./api.js";

const BOX_W = 168;
const BOX_H = 46;
const GAP_X = 24;
const GAP_Y = 56;

/** Level of each type: 0 for types without links, else 1 + deepest target. */
function levels(nodes, names) {
  const level = {};
  const visiting = new Set();
  const visit = (name) => {
    if (level[name] !== undefined) return level[name];
    if (visiting.has(name)) return 0;
    visiting.add(name);
    const targets = linksOf(nodes[name]).map((l) => l.target_type).filter((t) => t !== name && names.has(t));
    level[name] = targets.length ? 1 + Math.max(...targets.map(visit)) : 0;
    visiting.delete(name);
    return level[name];
  };
  names.forEach(visit);
  return level;
}

/**
 * Draw `names` (a subset of the dictionary's types) with their `counts`;
 * `href(name)` is where a box leads.
 */
export function drawGraph(nodes, names, counts, href) {
  const shown = new Set(names);
  const level = levels(nodes, shown);
  const rows = [];
  for (const name of shown) (rows[level[name]] ??= []).push(name);
  const rowsFilled = rows.filter(Boolean);
  rowsFilled.forEach((row) => row.sort((a, b) => (nodes[a].category || "").localeCompare(nodes[b].category || "") || a.localeCompare(b)));
  const widest = Math.max(1, ...rowsFilled.map((r) => r.length));
  const width = widest * (BOX_W + GAP_X) + GAP_X;
  const height = rowsFilled.length * (BOX_H + GAP_Y) + GAP_Y / 2;
  const position = {};
  rowsFilled.forEach((row, r) => {
    const offset = (width - row.length * (BOX_W + GAP_X) + GAP_X) / 2;
    row.forEach((name, i) => {
      position[name] = { x: offset + i * (BOX_W + GAP_X), y: GAP_Y / 2 + r * (BOX_H + GAP_Y) };
    });
  });
  const edges = [];
  for (const name of shown) {
    for (const link of linksOf(nodes[name])) {
      const target = position[link.target_type];
      if (!target || link.target_type === name) continue;
      const from = position[name];
      edges.push(
        svg("line", {
          x1: from.x + BOX_W / 2,
          y1: from.y,
          x2: target.x + BOX_W / 2,
          y2: target.y + BOX_H,
          class: "edge",
        }),
      );
    }
  }
  const boxes = [...shown].map((name) => {
    const { x, y } = position[name];
    const count = counts[name] ?? 0;
    return svg(
      "a",
      { href: href(name), class: `node ${count > 0 ? "has-data" : "empty"}`, "data-node": name },
      svg("title", {}, `${name}: ${count.toLocaleString()} records (${nodes[name].category || "uncategorized"})`),
      svg("rect", { x, y, width: BOX_W, height: BOX_H, rx: 8 }),
      svg("text", { x: x + BOX_W / 2, y: y + 19, class: "name" }, name.length > 22 ? `${name.slice(0, 21)}…` : name),
      svg("text", { x: x + BOX_W / 2, y: y + 36, class: "count" }, count.toLocaleString()),
    );
  });
  return svg(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      width,
      role: "img",
      "aria-label": `Graph of ${shown.size} node types`,
      class: "graph",
    },
    svg("g", {}, edges),
    svg("g", {}, boxes),
  );
}

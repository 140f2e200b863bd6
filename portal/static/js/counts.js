// Record counts per node type and project, fetched as ONE GraphQL request
// (aliased `_<type>_count` fields), however many projects and types.

import { graphql, dictionary } from "./api.js";

/** Node types that hold records worth counting (not program/project). */
export async function countedTypes() {
  const nodes = await dictionary();
  return Object.keys(nodes)
    .filter((name) => name !== "program" && name !== "project")
    .sort();
}

/** {projectId: {type: count}} for every project id given. */
export async function countsFor(projectIds, types) {
  if (!projectIds.length || !types.length) return {};
  const fields = [];
  projectIds.forEach((pid, p) =>
    types.forEach((type, t) => fields.push(`p${p}_${t}: _${type}_count(project_id: ${JSON.stringify(pid)})`)),
  );
  const data = await graphql(`{ ${fields.join("\n")} }`);
  const out = {};
  projectIds.forEach((pid, p) => {
    out[pid] = {};
    types.forEach((type, t) => (out[pid][type] = data[`p${p}_${t}`] ?? 0));
  });
  return out;
}

/** Every project the caller may read: [{project_id}]. */
export async function readableProjects() {
  const data = await graphql("{ project(first: 0, order_by_asc: \"project_id\") { project_id } }");
  return data.project;
}

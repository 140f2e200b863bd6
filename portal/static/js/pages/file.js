// A data file's page (`/files/<guid>`, as Gen3's portal has it): its core
// metadata (peregrine's `/api/search/coremetadata`), its index record (size,
// checksums, where it is stored), the records it is linked to, and a
// Download button that asks fence for a short-lived URL and follows it.

import { h, fill } from "../dom.js";
import { request, graphql, dictionary, linksOf, ApiError } from "../api.js";

export async function render(main, session, guid) {
  let metadata;
  try {
    metadata = await request("GET", `/api/search/coremetadata/${encodeURIComponent(guid)}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    fill(
      main,
      h("h1", {}, "File not found"),
      h("p", { class: "notice error" }, `No data file ${guid} that you may read.`),
    );
    return;
  }
  const [record, nodes] = await Promise.all([
    request("GET", `/index/index/${encodeURIComponent(guid)}`).catch(() => null),
    dictionary(),
  ]);
  const linked = await linkedRecords(nodes[metadata.type], metadata.type, guid);
  const rows = [
    ["Type", metadata.type],
    ["Project", metadata.project_id],
    ["Data format", metadata.data_format],
    ["Size", record?.size != null ? `${humanSize(record.size)} (${record.size} bytes)` : metadata.file_size],
    ["MD5", record?.hashes?.md5 ?? metadata.md5sum],
    ["SHA-256", record?.hashes?.sha256],
    ["Object id", guid],
    ["Stored at", record?.urls?.join(", ")],
    ["Indexed", record?.created_date],
    ["Citation", metadata.citation],
  ];
  const shown = new Set(["type", "project_id", "data_format", "file_size", "md5sum", "object_id", "citation", "file_name"]);
  for (const [key, value] of Object.entries(metadata)) {
    if (!shown.has(key) && value !== null && value !== "") rows.push([key, value]);
  }
  fill(
    main,
    h("h1", {}, metadata.file_name || guid),
    h(
      "p",
      { class: "actions" },
      h(
        "a",
        { class: "button", href: `/user/data/download/${encodeURIComponent(guid)}?expires_in=900&redirect` },
        "Download",
      ),
    ),
    h(
      "dl",
      { class: "card file-metadata" },
      rows.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]),
    ),
    h("h2", {}, "Linked records"),
    linked.length
      ? h(
          "ul",
          { class: "linked" },
          linked.map(([link, target]) => h("li", {}, `${link}: `, h("strong", {}, target.submitter_id || target.id))),
        )
      : h("p", {}, "None."),
  );
}

/** The records a data-file node links to: [link name, {id, submitter_id}]. */
async function linkedRecords(schema, type, guid) {
  if (!schema) return [];
  const links = linksOf(schema).map((l) => l.name);
  if (!links.length) return [];
  const fields = links.map((l) => `${l} { id submitter_id }`).join(" ");
  const data = await graphql(`{ file: ${type}(object_id: ${JSON.stringify(guid)}) { ${fields} } }`);
  const node = data.file?.[0] || {};
  return links.flatMap((l) => (node[l] || []).map((target) => [l, target]));
}

export function humanSize(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

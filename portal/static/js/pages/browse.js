// Browse by node: pick a project and node type, then page, sort and search
// its records, view one, download the table (TSV/JSON), and delete selected
// records (only offered to users with delete rights; the server decides).
// Rows of data-file types link to their file page and download their bytes.

import { h, fill, field, announce } from "../dom.js";
import { graphql, request, dictionary, valueProperties, projectPath } from "../api.js";
import { readableProjects } from "../counts.js";

const PAGE_SIZES = [10, 25, 50, 100];

export async function render(main, session, projectId, nodeType) {
  const [projects, nodes] = await Promise.all([readableProjects(), dictionary()]);
  if (!projects.length) {
    fill(main, h("h1", {}, "Browse"), h("p", {}, "You cannot read any project yet."));
    return;
  }
  projectId = projects.some((p) => p.project_id === projectId) ? projectId : projects[0].project_id;
  const types = Object.keys(nodes).filter((n) => n !== "program").sort();
  nodeType = types.includes(nodeType) ? nodeType : types.includes("case") ? "case" : types[0];
  const go = (pid, type) => (location.hash = `#/browse/${encodeURIComponent(pid)}/${type}`);
  const projectSelect = h(
    "select",
    { onchange: () => go(projectSelect.value, typeSelect.value) },
    projects.map((p) => h("option", { value: p.project_id, selected: p.project_id === projectId }, p.project_id)),
  );
  const typeSelect = h(
    "select",
    { onchange: () => go(projectSelect.value, typeSelect.value) },
    types.map((t) => h("option", { value: t, selected: t === nodeType }, t)),
  );
  const table = new RecordTable(session, projectId, nodeType, nodes[nodeType]);
  const exportUrl = (format) =>
    `${projectPath(projectId)}/export?node_label=${encodeURIComponent(nodeType)}&format=${format}`;
  fill(
    main,
    h("h1", {}, "Browse records"),
    h(
      "div",
      { class: "toolbar" },
      field("Project", projectSelect),
      field("Node type", typeSelect),
      field("Search submitter_id or id", table.search),
      h(
        "div",
        { class: "actions" },
        h("a", { class: "button secondary", href: exportUrl("tsv"), download: `${nodeType}.tsv` }, "Download TSV"),
        h("a", { class: "button secondary", href: exportUrl("json"), download: `${nodeType}.json` }, "Download JSON"),
      ),
    ),
    table.element,
  );
  await table.load();
}

class RecordTable {
  constructor(session, projectId, nodeType, schema) {
    this.projectId = projectId;
    this.nodeType = nodeType;
    const properties = valueProperties(schema);
    const first = ["id", "submitter_id"].filter((p) => p === "id" || properties.includes(p));
    this.columns = [...first, ...properties.filter((p) => !first.includes(p))];
    this.isFile = (schema.category || "").endsWith("_file") && properties.includes("object_id");
    this.mayDelete = session.can("delete", projectId);
    this.page = 0;
    this.pageSize = 25;
    this.sort = "submitter_id";
    this.descending = false;
    this.selected = new Set();
    if (!this.columns.includes(this.sort)) this.sort = "id";
    let timer;
    this.search = h("input", {
      type: "search",
      placeholder: "e.g. case-01",
      oninput: () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.page = 0;
          this.load();
        }, 250);
      },
    });
    this.element = h("section", { class: "records" });
    this.detail = h("section", { class: "detail", "aria-live": "polite" });
  }

  async load() {
    const args = [
      `project_id: ${JSON.stringify(this.projectId)}`,
      this.search.value.trim() ? `quick_search: ${JSON.stringify(this.search.value.trim())}` : "",
    ]
      .filter(Boolean)
      .join(", ");
    const order = `${this.descending ? "order_by_desc" : "order_by_asc"}: ${JSON.stringify(this.sort)}`;
    const data = await graphql(
      `{ rows: ${this.nodeType}(${args}, first: ${this.pageSize}, offset: ${this.page * this.pageSize}, ${order}) { ${this.columns.join(" ")} }
         total: _${this.nodeType}_count(${args}) }`,
    );
    this.draw(data.rows, data.total);
  }

  draw(rows, total) {
    const pages = Math.max(1, Math.ceil(total / this.pageSize));
    const header = this.columns.map((column) => {
      const active = column === this.sort;
      return h(
        "th",
        { scope: "col", "aria-sort": active ? (this.descending ? "descending" : "ascending") : null },
        h(
          "button",
          {
            class: "link",
            onclick: () => {
              this.descending = active ? !this.descending : false;
              this.sort = column;
              this.load();
            },
          },
          column,
          active ? (this.descending ? " ▼" : " ▲") : "",
        ),
      );
    });
    if (this.isFile) header.push(h("th", { scope: "col" }, "File"));
    const body = rows.map((row) =>
      h(
        "tr",
        {},
        this.mayDelete
          ? h(
              "td",
              {},
              h("input", {
                type: "checkbox",
                "aria-label": `Select ${row.submitter_id || row.id}`,
                checked: this.selected.has(row.id),
                onchange: (e) => {
                  if (e.target.checked) this.selected.add(row.id);
                  else this.selected.delete(row.id);
                  this.drawActions();
                },
              }),
            )
          : null,
        this.columns.map((column) =>
          h(
            "td",
            {},
            column === "id"
              ? h("button", { class: "link", onclick: () => this.view(row.id) }, row.id.slice(0, 8) + "…")
              : format(row[column]),
          ),
        ),
        this.isFile ? h("td", { class: "file-links" }, fileLinks(row)) : null,
      ),
    );
    this.actions = h("div", { class: "actions" });
    const pageSize = h(
      "select",
      {
        onchange: () => {
          this.pageSize = Number(pageSize.value);
          this.page = 0;
          this.load();
        },
      },
      PAGE_SIZES.map((n) => h("option", { value: n, selected: n === this.pageSize }, n)),
    );
    fill(
      this.element,
      this.actions,
      h(
        "div",
        { class: "table-scroll" },
        h(
          "table",
          { class: "data" },
          h("caption", {}, `${total.toLocaleString()} ${this.nodeType} records in ${this.projectId}`),
          h("thead", {}, h("tr", {}, this.mayDelete ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Select")) : null, header)),
          h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: this.columns.length + 1 }, "No records."))),
        ),
      ),
      h(
        "nav",
        { class: "pager", "aria-label": "Pages" },
        h("button", { class: "secondary", disabled: this.page === 0, onclick: () => this.turn(-1) }, "Previous"),
        h("span", {}, `Page ${this.page + 1} of ${pages}`),
        h("button", { class: "secondary", disabled: this.page + 1 >= pages, onclick: () => this.turn(1) }, "Next"),
        field("Rows per page", pageSize),
      ),
      this.detail,
    );
    this.drawActions();
  }

  turn(step) {
    this.page += step;
    this.load();
  }

  drawActions() {
    if (!this.mayDelete) return;
    const n = this.selected.size;
    fill(
      this.actions,
      h("button", { class: "danger", disabled: n === 0, onclick: () => this.remove() }, `Delete selected (${n})`),
    );
  }

  async view(id) {
    const reply = await request("GET", `${projectPath(this.projectId)}/entities/${encodeURIComponent(id)}`);
    const properties = reply.entities[0].properties;
    fill(
      this.detail,
      h(
        "div",
        { class: "card" },
        h("h2", {}, `${properties.type} ${properties.submitter_id || id}`),
        h(
          "dl",
          {},
          Object.entries(properties).map(([key, value]) => [h("dt", {}, key), h("dd", {}, format(value))]),
        ),
        h("button", { class: "secondary", onclick: () => fill(this.detail) }, "Close"),
      ),
    );
    this.detail.scrollIntoView({ block: "nearest" });
  }

  async remove() {
    const ids = [...this.selected];
    if (!confirm(`Delete ${ids.length} ${this.nodeType} record(s)? This cannot be undone.`)) return;
    try {
      await request("DELETE", `${projectPath(this.projectId)}/entities/${ids.map(encodeURIComponent).join(",")}`);
      this.selected.clear();
      announce(`Deleted ${ids.length} record(s).`, "success");
      await this.load();
    } catch (e) {
      announce(`Nothing was deleted: ${refusal(e.body) || e.message}`, "error");
    }
  }
}

/** A data-file row's links: its file page, and its bytes (fence's download, redirected). */
function fileLinks(row) {
  if (!row.object_id) return "";
  const guid = encodeURIComponent(row.object_id);
  const name = row.file_name || row.submitter_id || row.object_id;
  return [
    h("a", { href: `#/files/${guid}` }, "Details"),
    " ",
    h(
      "a",
      { class: "button secondary", href: `/user/data/download/${guid}?expires_in=900&redirect`, "aria-label": `Download ${name}` },
      "Download",
    ),
  ];
}

/** Why the server refused a deletion, in words. */
function refusal(body) {
  const messages = (body?.entities || []).flatMap((e) => (e.errors || []).map((err) => err.message));
  return [...new Set(messages)].join(" ");
}

function format(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(format).join(", ");
  if (typeof value === "object") return value.submitter_id || value.id || JSON.stringify(value);
  return String(value);
}

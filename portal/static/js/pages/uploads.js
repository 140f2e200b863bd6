// My files: upload data files from the browser, then "Map my files".
//
// Upload: choose or drop files; each goes to the URLs fence hands out
// (`/user/data/upload`, or multipart above MULTIPART_BYTES), with a progress
// bar. A failed PUT is retried with backoff; after a network error the Retry
// button resumes a multipart upload from its first missing part.
//
// Map: the user's uploads not yet linked to any record (indexd's
// `acl=null&uploader=<user>` listing, with size and MD5), selectable, mapped
// to a data-file node type of a project through a form (sheepdog links the
// index record when the node names it in `object_id`), or deleted.

import { h, fill, field, announce, dropZone } from "../dom.js";
import { request, dictionary, linksOf, projectPath, csrfToken, ApiError } from "../api.js";
import { readableProjects } from "../counts.js";
import { humanSize } from "./file.js";

/** Files above this go in parts of this size (S3 wants parts of 5 MiB or more). */
const MULTIPART_BYTES = 8 << 20;
const ATTEMPTS = 4;

/** Properties the mapping fills itself, or the server does. */
const FILLED = new Set(["type", "submitter_id", "file_name", "file_size", "md5sum", "object_id", "project_id"]);

export async function render(main, session) {
  const [nodes, projects] = await Promise.all([dictionary(), readableProjects()]);
  const fileTypes = Object.keys(nodes).filter((n) => (nodes[n].category || "").endsWith("_file")).sort();
  const writable = projects.filter((p) => session.can("create", p.project_id));
  const uploads = h("ul", { class: "uploads" });
  const unmapped = h("section", { class: "unmapped", "aria-live": "polite" });
  const reload = () => drawUnmapped(unmapped, session, nodes, fileTypes, writable);
  const fileInput = h("input", { type: "file", multiple: true, "aria-label": "Files to upload" });
  const start = (files) => {
    for (const file of files) {
      const upload = new Upload(file, reload);
      uploads.append(upload.element);
      upload.run();
    }
  };
  fileInput.addEventListener("change", () => start([...fileInput.files]));
  const drop = dropZone(start, h("p", {}, "Drop data files here, or choose them:"), fileInput);
  fill(
    main,
    h("h1", {}, "My files"),
    h("h2", {}, "Upload"),
    drop,
    uploads,
    h("h2", {}, "Map my files"),
    h("p", { class: "hint" }, "Uploads not yet linked to a record. Map them to a data-file node of a project, or delete them."),
    unmapped,
  );
  await reload();
}

/** One file's upload, drawn as a list item with a progress bar. */
class Upload {
  constructor(file, onDone) {
    this.file = file;
    this.onDone = onDone;
    this.progress = h("progress", { max: 1, value: 0, "aria-label": `Upload progress of ${file.name}` });
    this.status = h("span", { class: "status" }, "Waiting…");
    this.retry = h("button", { type: "button", class: "secondary", hidden: true, onclick: () => this.run() }, `Retry ${file.name}`);
    this.element = h("li", {}, h("strong", {}, file.name), ` ${humanSize(file.size)} `, this.progress, " ", this.status, " ", this.retry);
    // What survives a failure: the record, and for multipart the parts done.
    this.guid = null;
    this.multipart = null;
  }

  async run() {
    this.retry.hidden = true;
    this.status.textContent = "Uploading…";
    try {
      if (this.file.size > MULTIPART_BYTES) await this.inParts();
      else await this.whole();
      this.progress.value = 1;
      this.status.textContent = "Done";
      this.element.dataset.guid = this.guid;
      await this.onDone();
    } catch (e) {
      this.status.textContent = `Failed: ${e.message}`;
      this.retry.hidden = false;
    }
  }

  async whole() {
    let url;
    if (this.guid) {
      const name = encodeURIComponent(this.file.name);
      url = (await request("GET", `/user/data/upload/${encodeURIComponent(this.guid)}?file_name=${name}`)).url;
    } else {
      const answer = await request("POST", "/user/data/upload", { json: { file_name: this.file.name } });
      this.guid = answer.guid;
      url = answer.url;
    }
    await withRetries(() => put(url, this.file, (loaded) => (this.progress.value = loaded / this.file.size)));
  }

  async inParts() {
    if (!this.multipart) {
      const answer = await request("POST", "/user/data/multipart/init", { json: { file_name: this.file.name } });
      this.guid = answer.guid;
      this.multipart = { uploadId: answer.uploadId, etags: [] };
    }
    const key = `${this.guid}/${this.file.name}`;
    const count = Math.ceil(this.file.size / MULTIPART_BYTES);
    const { uploadId, etags } = this.multipart;
    for (let number = 1; number <= count; number++) {
      if (etags[number - 1]) continue;
      const slice = this.file.slice((number - 1) * MULTIPART_BYTES, number * MULTIPART_BYTES);
      const done = (number - 1) * MULTIPART_BYTES;
      etags[number - 1] = await withRetries(async () => {
        const { presigned_url } = await request("POST", "/user/data/multipart/upload", {
          json: { key, uploadId, partNumber: number },
        });
        return put(presigned_url, slice, (loaded) => (this.progress.value = (done + loaded) / this.file.size));
      });
    }
    await request("POST", "/user/data/multipart/complete", {
      json: { key, uploadId, parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
    });
  }
}

/** PUT `body` to a presigned URL with progress: the answer's ETag. */
function put(url, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    // The browser sends the session cookie to this server's own URLs, and
    // a request with it must carry the page's CSRF token (a bucket's URLs
    // get no cookie, and no header that would need a CORS preflight).
    if (new URL(url, location.href).origin === location.origin) xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded);
    xhr.onerror = () => reject(new ApiError(0, "the connection failed"));
    xhr.onload = () =>
      xhr.status === 200 ? resolve(xhr.getResponseHeader("ETag")) : reject(new ApiError(xhr.status, xhr.responseText));
    xhr.send(body);
  });
}

/** Run `attempt` until it succeeds; network errors and 5xx wait and retry. */
async function withRetries(attempt) {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      const transient = !(e instanceof ApiError) || e.status === 0 || e.status >= 500;
      if (!transient || n >= ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, 500 * 2 ** n));
    }
  }
}

/** The user's unmapped uploads, with the mapping form. */
async function drawUnmapped(section, session, nodes, fileTypes, projects) {
  const user = encodeURIComponent(session.user.username);
  const listing = await request("GET", `/index/index?acl=null&uploader=${user}&limit=1024`);
  const records = listing.records || [];
  if (!records.length) {
    fill(section, h("p", {}, "No unmapped uploads."));
    return;
  }
  const selected = new Set();
  const rows = records.map((r) =>
    h(
      "tr",
      { dataset: { guid: r.did } },
      h(
        "td",
        {},
        h("input", {
          type: "checkbox",
          "aria-label": `Select ${r.file_name || r.did}`,
          onchange: (e) => (e.target.checked ? selected.add(r) : selected.delete(r)),
        }),
      ),
      h("td", {}, h("a", { href: `#/files/${encodeURIComponent(r.did)}` }, r.file_name || r.did)),
      h("td", {}, r.size == null ? "uploading…" : humanSize(r.size)),
      h("td", { class: "mono" }, r.hashes?.md5 || ""),
      h("td", {}, r.created_date || ""),
    ),
  );
  const form = mappingForm(nodes, fileTypes, projects, () => [...selected], () => drawUnmapped(section, session, nodes, fileTypes, projects));
  const remove = async () => {
    const chosen = [...selected];
    if (!chosen.length || !confirm(`Delete ${chosen.length} upload(s)? The bytes and their records go.`)) return;
    for (const r of chosen) await request("DELETE", `/user/data/${encodeURIComponent(r.did)}`);
    announce(`Deleted ${chosen.length} upload(s).`, "success");
    await drawUnmapped(section, session, nodes, fileTypes, projects);
  };
  fill(
    section,
    h(
      "table",
      { class: "data" },
      h("caption", {}, `${records.length} unmapped upload(s)`),
      h(
        "thead",
        {},
        h("tr", {}, ["", "File", "Size", "MD5", "Uploaded"].map((c) => h("th", { scope: "col" }, c))),
      ),
      h("tbody", {}, rows),
    ),
    h("div", { class: "actions" }, h("button", { type: "button", class: "danger", onclick: remove }, "Delete selected uploads")),
    form,
  );
}

/** Project, node type, the type's required values and one link: one record per selected upload. */
function mappingForm(nodes, fileTypes, projects, chosen, done) {
  if (!projects.length || !fileTypes.length) {
    return h("p", { class: "hint" }, "You may not create records in any project, so uploads cannot be mapped here.");
  }
  const project = h("select", {}, projects.map((p) => h("option", { value: p.project_id }, p.project_id)));
  const type = h("select", {}, fileTypes.map((t) => h("option", { value: t }, t)));
  const values = h("div", { class: "fields" });
  const result = h("div", { "aria-live": "polite" });
  let inputs = {};
  let link;
  let linkTarget;
  const drawFields = () => {
    const schema = nodes[type.value];
    const system = new Set(schema.systemProperties || []);
    inputs = {};
    const required = (schema.required || []).filter((p) => !FILLED.has(p) && !system.has(p) && schema.properties[p]);
    for (const name of required) {
      const property = schema.properties[name];
      inputs[name] = property.enum
        ? h("select", {}, property.enum.map((v) => h("option", { value: v }, String(v))))
        : h("input", { type: property.type === "integer" || property.type === "number" ? "number" : "text" });
    }
    link = h("select", {}, linksOf(schema).map((l) => h("option", { value: l.name }, `${l.name} (${l.target_type})`)));
    linkTarget = h("input", { type: "text", placeholder: "submitter_id" });
    fill(
      values,
      Object.entries(inputs).map(([name, control]) => field(name, control)),
      field("Link", link),
      field("Linked record (submitter_id)", linkTarget),
    );
  };
  type.addEventListener("change", drawFields);
  drawFields();
  const map = async () => {
    const records = chosen();
    if (!records.length) {
      fill(result, h("p", { class: "notice error", role: "alert" }, "Select the uploads to map first."));
      return;
    }
    const schema = nodes[type.value];
    const documents = records.map((r) => {
      const doc = {
        type: type.value,
        submitter_id: r.file_name || r.did,
        file_name: r.file_name,
        file_size: r.size,
        md5sum: r.hashes?.md5,
        object_id: r.did,
      };
      for (const [name, control] of Object.entries(inputs)) {
        const kind = schema.properties[name].type;
        doc[name] = kind === "integer" || kind === "number" ? Number(control.value) : control.value;
      }
      if (linkTarget.value.trim()) doc[link.value] = { submitter_id: linkTarget.value.trim() };
      return doc;
    });
    try {
      await request("PUT", projectPath(project.value), { json: documents });
      fill(result, h("p", { class: "notice success" }, `Mapped ${documents.length} file(s) to ${type.value} in ${project.value}.`));
      await done();
    } catch (e) {
      const errors = (e.body?.entities || []).flatMap((x) => (x.errors || []).map((err) => err.message));
      fill(result, h("p", { class: "notice error", role: "alert" }, `Nothing was mapped: ${[...new Set(errors)].join(" ") || e.message}`));
    }
  };
  return h(
    "form",
    { class: "card mapping", onsubmit: (e) => (e.preventDefault(), map()) },
    h("h3", {}, "Map selected uploads"),
    field("Project", project),
    field("Data-file type", type),
    values,
    h("button", { type: "submit" }, "Map selected"),
    result,
  );
}

// Submit data: choose or drop a TSV/CSV/JSON file, validate it (dry run) or
// submit it, watch the upload progress, and read per-row errors as a table.

import { h, fill, field, dropZone } from "../dom.js";
import { submitFile } from "../api.js";
import { readableProjects } from "../counts.js";

export async function render(main, session, projectId) {
  const projects = (await readableProjects()).filter(
    (p) => session.can("create", p.project_id) || session.can("update", p.project_id),
  );
  if (!projects.length) {
    fill(main, h("h1", {}, "Submit data"), h("p", {}, "You may not submit to any project. Ask an administrator for create or update rights."));
    return;
  }
  const projectSelect = h(
    "select",
    {},
    projects.map((p) => h("option", { value: p.project_id, selected: p.project_id === projectId }, p.project_id)),
  );
  const fileInput = h("input", { type: "file", accept: ".tsv,.txt,.csv,.json" });
  const chosen = h("p", { class: "hint" }, "No file chosen.");
  const progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
  const results = h("section", { "aria-live": "polite" });
  let file = null;
  const choose = (f) => {
    file = f;
    chosen.textContent = f ? `${f.name} (${f.size.toLocaleString()} bytes)` : "No file chosen.";
    fill(results);
  };
  fileInput.addEventListener("change", () => choose(fileInput.files[0] || null));
  const drop = dropZone(
    (files) => choose(files[0] || null),
    h("p", {}, "Drop a TSV, CSV or JSON file here, or choose one:"),
    fileInput,
    chosen,
  );
  const send = async (dryRun) => {
    if (!file) {
      fill(results, h("p", { class: "notice error", role: "alert" }, "Choose a file first."));
      return;
    }
    buttons.forEach((b) => (b.disabled = true));
    progress.hidden = false;
    progress.value = 0;
    fill(results, h("p", {}, dryRun ? "Validating…" : "Submitting…"));
    try {
      const reply = await submitFile(projectSelect.value, file, {
        dryRun,
        onProgress: (fraction) => (progress.value = fraction),
      });
      progress.value = 1;
      showResult(results, reply, dryRun);
    } catch (e) {
      fill(results, h("p", { class: "notice error", role: "alert" }, e.message));
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  const buttons = [
    h("button", { class: "secondary", onclick: () => send(true) }, "Validate only"),
    h("button", { onclick: () => send(false) }, "Submit"),
  ];
  fill(
    main,
    h("h1", {}, "Submit data"),
    h(
      "p",
      { class: "hint" },
      "Each row needs a ",
      h("code", {}, "type"),
      " and a ",
      h("code", {}, "submitter_id"),
      ". Templates for every node type are on the ",
      h("a", { href: "#/dictionary" }, "Dictionary"),
      " page. A submission is all or nothing: if any row is wrong, nothing is written.",
    ),
    h("div", { class: "card" }, field("Project", projectSelect), drop, h("div", { class: "actions" }, buttons, progress)),
    results,
  );
}

function showResult(el, { status, body }, dryRun) {
  if (typeof body !== "object" || body === null) {
    fill(el, h("p", { class: "notice error", role: "alert" }, `The server answered ${status}: ${body}`));
    return;
  }
  const entities = body.entities || [];
  const errors = entities.flatMap((entity, index) =>
    (entity.errors || []).map((error) => ({
      row: index + 1,
      submitter: entity.unique_keys?.[0]?.submitter_id ?? "",
      type: entity.type || "",
      column: (error.keys || []).join(", "),
      message: error.message,
    })),
  );
  const transactional = (body.transactional_errors || []).map((e) => (typeof e === "string" ? e : e.message || JSON.stringify(e)));
  if (body.success) {
    const created = body.created_entity_count ?? 0;
    const updated = body.updated_entity_count ?? 0;
    fill(
      el,
      h(
        "p",
        { class: "notice success", role: "status" },
        dryRun
          ? `Valid: ${entities.length.toLocaleString()} records would be written (${created} new, ${updated} updated). Nothing was written.`
          : `Submitted ${entities.length.toLocaleString()} records: ${created} created, ${updated} updated.`,
      ),
    );
    return;
  }
  fill(
    el,
    h(
      "p",
      { class: "notice error", role: "alert" },
      `${body.message || "The submission was refused."} Nothing was written.`,
      errors.length ? ` ${errors.length} problem(s) in ${body.entity_error_count ?? "some"} row(s):` : "",
    ),
    transactional.length ? h("ul", {}, transactional.map((t) => h("li", {}, t))) : null,
    errors.length
      ? h(
          "table",
          { class: "data errors" },
          h("caption", {}, "Problems by row (row 1 is the first record after the header)"),
          h("thead", {}, h("tr", {}, ["Row", "submitter_id", "Type", "Column", "Message"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            errors.map((e) => h("tr", {}, h("td", { class: "num" }, e.row), h("td", {}, e.submitter), h("td", {}, e.type), h("td", {}, e.column), h("td", {}, e.message))),
          ),
        )
      : null,
  );
}

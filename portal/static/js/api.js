// Talking to the server: the same HTTP API the Gen3 SDK uses. The session
// cookie authenticates; every request that may change something echoes the
// session's CSRF token, which the server checks.

const SUBMISSION = "/api/v0/submission";

/** An error response, with Gen3's `message` when the server sent one. */
export class ApiError extends Error {
  constructor(status, body) {
    super(messageOf(body) || `The server answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

function messageOf(body) {
  if (!body || typeof body !== "object") return typeof body === "string" ? body : "";
  if (typeof body.message === "string") return body.message;
  if (Array.isArray(body.errors)) return body.errors.map((e) => e.message || e).join("; ");
  return "";
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)commons_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** fetch with the session: JSON in, JSON (or text) out, errors thrown. */
export async function request(method, path, { json, body, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers } };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken();
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: keep the text.
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

/** A GraphQL query; GraphQL errors are thrown like HTTP errors. */
export async function graphql(query, variables = {}) {
  const reply = await request("POST", `${SUBMISSION}/graphql`, { json: { query, variables } });
  if (reply && Array.isArray(reply.errors) && reply.errors.length) throw new ApiError(400, reply);
  return reply.data;
}

/** Upload a file to a project with progress, as XMLHttpRequest reports it. */
export function submitFile(projectId, file, { dryRun, onProgress }) {
  const [program, project] = splitProject(projectId);
  const url = `${SUBMISSION}/${encodeURIComponent(program)}/${encodeURIComponent(project)}${dryRun ? "/_dry_run" : ""}`;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Content-Type", contentTypeOf(file.name));
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "The connection to the server failed"));
    xhr.onload = () => {
      let body = xhr.responseText;
      try {
        body = JSON.parse(body);
      } catch {
        // Keep the text.
      }
      resolve({ status: xhr.status, body });
    };
    xhr.send(file);
  });
}

function contentTypeOf(name) {
  const lower = name.toLowerCase();
  if (lower.endsWith(".json")) return "application/json";
  if (lower.endsWith(".csv")) return "text/csv";
  return "text/tab-separated-values";
}

/** "prog-proj" -> ["prog", "proj"] (a program name has no dash). */
export function splitProject(projectId) {
  const dash = projectId.indexOf("-");
  return [projectId.slice(0, dash), projectId.slice(dash + 1)];
}

export function projectPath(projectId) {
  const [program, project] = splitProject(projectId);
  return `${SUBMISSION}/${encodeURIComponent(program)}/${encodeURIComponent(project)}`;
}

let dictionaryPromise;
/**
 * Every node type of the loaded dictionary, keyed by name (fetched once).
 * Internal types (Gen3's built-in `root` and `data_release`) hold no
 * submitted data, and Gen3's portal leaves them out too.
 */
export function dictionary() {
  dictionaryPromise ??= request("GET", `${SUBMISSION}/_dictionary/_all`).then((all) => {
    const nodes = {};
    for (const [name, schema] of Object.entries(all)) {
      if (name.startsWith("_") || !schema || typeof schema !== "object" || !schema.properties) continue;
      if (schema.category === "internal") continue;
      nodes[name] = schema;
    }
    return nodes;
  });
  return dictionaryPromise;
}

/** The links of a node type, flattening subgroups. */
export function linksOf(schema) {
  const out = [];
  const walk = (links) => {
    for (const link of links || []) {
      if (link.subgroup) walk(link.subgroup);
      else out.push(link);
    }
  };
  walk(schema.links);
  return out;
}

const GRAPHQL_NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;
/** Properties that are record values (not links), usable as GraphQL fields. */
export function valueProperties(schema) {
  const links = new Set(linksOf(schema).map((l) => l.name));
  return Object.keys(schema.properties).filter(
    (p) => !links.has(p) && GRAPHQL_NAME.test(p) && p !== "type",
  );
}

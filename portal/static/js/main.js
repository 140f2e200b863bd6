// The portal's shell: who is logged in, what they may do (from
// /authz/mapping), the navigation, and a hash router that draws one page at
// a time into <main>. Pages live in ./pages, one module each.

import { h, fill, announce } from "./dom.js";
import { request, ApiError } from "./api.js";
import * as login from "./pages/login.js";
import * as profile from "./pages/profile.js";
import * as projects from "./pages/projects.js";
import * as project from "./pages/project.js";
import * as browse from "./pages/browse.js";
import * as submit from "./pages/submit.js";
import * as query from "./pages/query.js";
import * as dictionaryPage from "./pages/dictionary.js";
import * as filePage from "./pages/file.js";
import * as uploads from "./pages/uploads.js";

/** Routes: `#/name/arg...` -> page module with render(main, session, ...args). */
const PAGES = {
  login,
  profile,
  projects,
  project,
  browse,
  submit,
  query,
  dictionary: dictionaryPage,
  // `#/files`: my uploads; `#/files/<guid>`: one file's page.
  files: { render: (main, session, guid) => (guid ? filePage.render(main, session, guid) : uploads.render(main, session)) },
};

const NAV = [
  ["projects", "Projects"],
  ["browse", "Browse"],
  ["submit", "Submit", (s) => s.canAnywhere("create") || s.canAnywhere("update")],
  ["files", "My files"],
  ["query", "Query"],
  ["dictionary", "Dictionary"],
  ["profile", "Profile"],
];

/** The logged-in user and their permissions. */
class Session {
  constructor(user, mapping) {
    this.user = user;
    this.mapping = mapping || {};
  }

  /** May the user do `method` (create/read/update/delete) on a project? */
  can(method, projectId) {
    const dash = projectId.indexOf("-");
    const program = projectId.slice(0, dash);
    const code = projectId.slice(dash + 1);
    const resources = ["/", `/programs/${program}`, `/programs/${program}/projects/${code}`];
    return resources.some((r) => this.allows(r, method));
  }

  /** May the user do `method` on at least one resource? */
  canAnywhere(method) {
    return Object.keys(this.mapping).some((r) => this.allows(r, method));
  }

  allows(resource, method) {
    return (this.mapping[resource] || []).some(
      (a) => (a.service === "*" || a.service === "sheepdog") && (a.method === "*" || a.method === method),
    );
  }
}

let session = null;

async function loadSession() {
  try {
    const user = await request("GET", "/user/user");
    const mapping = await request("GET", "/authz/mapping");
    return new Session(user, mapping);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

function drawChrome(current) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!session) {
    fill(nav);
    fill(who);
    return;
  }
  fill(
    nav,
    h(
      "ul",
      {},
      NAV.filter(([, , visible]) => !visible || visible(session)).map(([name, label]) =>
        h("li", {}, h("a", { href: `#/${name}`, "aria-current": name === current ? "page" : null }, label)),
      ),
    ),
  );
  fill(
    who,
    h("span", {}, session.user.username),
    " ",
    h("button", { type: "button", class: "button secondary", onclick: logOut }, "Log out"),
  );
}

/** End the session (a POST with the CSRF token), then show the login page. */
async function logOut() {
  await request("POST", "/user/logout?next=/");
  location.href = "/";
}

/** The page name and arguments of the current hash (`#/name/arg...`). */
function parseHash() {
  const rest = location.hash.replace(/^#\/?/, "").split("?")[0];
  // A file's guid may hold a slash (dg.XXXX/<uuid>): everything after files/.
  if (rest.startsWith("files/")) return ["files", safeDecode(rest.slice("files/".length))];
  const parts = rest.split("/");
  try {
    return parts.map(decodeURIComponent);
  } catch {
    return ["projects"];
  }
}

async function route() {
  const [name = "projects", ...args] = parseHash();
  const main = document.getElementById("main");
  announce("");
  try {
    if (!session && name !== "login") {
      session = await loadSession();
      if (!session) {
        location.hash = "#/login";
        return;
      }
    }
    const page = Object.hasOwn(PAGES, name) ? PAGES[name] : projects;
    drawChrome(name);
    fill(main, h("p", {}, "Loading…"));
    await page.render(main, session, ...args);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session = null;
      location.hash = "#/login";
      return;
    }
    fill(main, h("h1", {}, "Something went wrong"), h("p", { class: "notice error" }, e.message));
  }
  main.focus({ preventScroll: true });
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Called by the login page once the session cookie is set. */
export async function loggedIn() {
  session = await loadSession();
  location.hash = "#/projects";
}

/** Query-string parameters of the current hash route. */
export function hashParams() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

// Gen3's file pages live at /files/<guid>: the server answers that path with
// this page, which shows it as its own route.
if (location.pathname.startsWith("/files/")) {
  location.replace(`/#/files/${location.pathname.slice("/files/".length)}`);
} else {
  window.addEventListener("hashchange", route);
  route();
}

// Profile: create an API key (shown once, with Copy and a credentials.json
// download), list and revoke the user's keys, and show what the user may do.

import { h, fill, download, announce } from "../dom.js";
import { request } from "../api.js";

const KEYS = "/user/credentials/api";
const DAY = 24 * 60 * 60;

export async function render(main, session) {
  const newKey = h("section", { "aria-live": "polite" });
  const keys = h("section");
  const create = h(
    "button",
    {
      onclick: async () => {
        const credentials = await request("POST", `${KEYS}/`, { json: { scope: ["data", "user"] } });
        showNewKey(newKey, credentials);
        await drawKeys(keys);
      },
    },
    "Create API key",
  );
  fill(
    main,
    h("h1", {}, "Profile"),
    h("p", {}, "Logged in as ", h("strong", {}, session.user.username), session.user.is_admin ? " (administrator)" : ""),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "API keys"),
      h(
        "p",
        { class: "hint" },
        "Scripts and the gen3 SDK authenticate with a credentials.json file: ",
        h("code", {}, "Gen3Auth(refresh_file=\"credentials.json\")"),
        ".",
      ),
      create,
      newKey,
      keys,
    ),
    h("section", { class: "card" }, h("h2", {}, "Access"), accessTable(session.mapping)),
  );
  await drawKeys(keys);
}

function showNewKey(el, credentials) {
  const text = JSON.stringify({ api_key: credentials.api_key, key_id: credentials.key_id });
  const box = h("textarea", { readonly: true, rows: 4, "aria-label": "New API key" }, text);
  fill(
    el,
    h(
      "div",
      { class: "notice success" },
      h("p", {}, h("strong", {}, "Your new key is shown only this once."), " Save it now."),
      box,
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            class: "secondary",
            onclick: async () => {
              box.select();
              try {
                await navigator.clipboard.writeText(text);
              } catch {
                document.execCommand("copy");
              }
              announce("Copied the key to the clipboard.", "success");
            },
          },
          "Copy",
        ),
        h("button", { onclick: () => download("credentials.json", text, "application/json") }, "Download credentials.json"),
      ),
    ),
  );
}

async function drawKeys(el) {
  const { jtis } = await request("GET", `${KEYS}/`);
  if (!jtis.length) {
    fill(el, h("p", {}, "You have no active API keys."));
    return;
  }
  const now = Date.now() / 1000;
  fill(
    el,
    h(
      "table",
      { class: "data" },
      h("caption", {}, "Your active keys"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key id"), h("th", { scope: "col" }, "Expires"), h("th", { scope: "col" }, "Days left"), h("th", { scope: "col" }, ""))),
      h(
        "tbody",
        {},
        jtis.map(({ jti, exp }) =>
          h(
            "tr",
            {},
            h("td", {}, h("code", {}, jti)),
            h("td", {}, new Date(exp * 1000).toISOString().slice(0, 10)),
            h("td", {}, Math.max(0, Math.floor((exp - now) / DAY))),
            h(
              "td",
              {},
              h(
                "button",
                {
                  class: "danger",
                  "aria-label": `Revoke key ${jti}`,
                  onclick: async () => {
                    if (!confirm(`Revoke key ${jti}? Scripts using it stop working at once.`)) return;
                    await request("DELETE", `${KEYS}/${encodeURIComponent(jti)}`);
                    announce(`Revoked key ${jti}.`, "success");
                    await drawKeys(el);
                  },
                },
                "Revoke",
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

function accessTable(mapping) {
  const rows = Object.entries(mapping).filter(([resource]) => resource === "/" || resource.startsWith("/programs"));
  if (!rows.length) return h("p", {}, "You have no grants yet. Open projects are still readable; ask an administrator for more.");
  return h(
    "table",
    { class: "data" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Resource"), h("th", { scope: "col" }, "Rights"))),
    h(
      "tbody",
      {},
      rows.map(([resource, actions]) =>
        h(
          "tr",
          {},
          h("td", {}, h("code", {}, resource)),
          h("td", {}, [...new Set(actions.map((a) => (a.service === "*" ? a.method : `${a.method} (${a.service})`)))].sort().join(", ")),
        ),
      ),
    ),
  );
}

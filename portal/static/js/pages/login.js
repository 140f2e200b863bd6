// Login with a local account's user name and password. On success the
// server sets the session cookie; the page never sees the token.

import { h, fill, field } from "../dom.js";
import { request } from "../api.js";
import { loggedIn } from "../main.js";

export async function render(main) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "notice error", role: "alert", hidden: true });
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        try {
          await request("POST", "/user/login/local", {
            json: { username: username.value, password: password.value },
          });
          await loggedIn();
        } catch (e) {
          error.textContent = e.message;
          error.hidden = false;
        }
      },
    },
    h("h1", {}, "Log in"),
    field("User name", username),
    field("Password", password),
    error,
    h("button", { type: "submit" }, "Log in"),
    h(
      "p",
      { class: "hint" },
      "No password yet? An administrator sets one with ",
      h("code", {}, "commons users passwd NAME"),
      ".",
    ),
  );
  fill(main, form);
  username.focus();
}

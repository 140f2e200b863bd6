// Query: GraphiQL (schema-driven autocomplete, docs pane, history) against
// the live GraphQL endpoint, so a dictionary change needs no rebuild. Its
// code (React, GraphiQL) is embedded and loaded only when this page opens.

import { h, fill } from "../dom.js";
import { csrfToken } from "../api.js";

const VENDOR = "/portal/vendor";
const DEFAULT_QUERY = `# Press the run button (or Ctrl+Enter). Ctrl+Space completes names.
{
  project(first: 0) {
    project_id
  }
}
`;

let loading;
function loadGraphiQL() {
  loading ??= (async () => {
    document.head.append(h("link", { rel: "stylesheet", href: `${VENDOR}/graphiql.min.css` }));
    for (const file of ["react.production.min.js", "react-dom.production.min.js", "graphiql.min.js"]) {
      await new Promise((resolve, reject) => {
        const script = h("script", { src: `${VENDOR}/${file}` });
        script.onload = resolve;
        script.onerror = () => reject(new Error(`Could not load ${file}`));
        document.head.append(script);
      });
    }
  })();
  return loading;
}

async function fetcher(params) {
  const response = await fetch("/api/v0/submission/graphql", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
    body: JSON.stringify(params),
  });
  return response.json();
}

let root;
export async function render(main) {
  await loadGraphiQL();
  const holder = h("div", { class: "graphiql-holder" });
  fill(main, h("h1", { class: "sr-only" }, "Query"), holder);
  root?.unmount();
  root = window.ReactDOM.createRoot(holder);
  root.render(
    window.React.createElement(window.GraphiQL, {
      fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultEditorToolsVisibility: true,
    }),
  );
}

// The modeltel console shell: sign-in and a hash router that polls the current page. Pages live in
// pages.js; a new page (alerts, detections) is one more entry in its PAGES table, and appears in the
// navigation when it sets `nav`.

import { clock } from "./chart.js";
import { PAGES } from "./pages.js";
import { AuthError, el, signIn } from "./util.js";

const REFRESH_S = Number(new URLSearchParams(location.search).get("refresh") ?? 5); // ?refresh=0: no polling

function loginForm(main, onDone) {
  const input = el("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  // method=post: were the submit handler ever skipped, the token would go in a body, never in a URL
  const form = el("form", { class: "login", method: "post", "aria-labelledby": "login-title" },
    el("h1", { id: "login-title" }, "Sign in"),
    el("p", {}, "This collector requires its bearer token (auth_token, or MODELTEL_COLLECTOR_AUTH_TOKEN). It is kept in this page's memory only: a reload asks again."),
    el("label", { for: "token" }, "Bearer token"), input,
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn(input.value);
    onDone();
  });
  main.replaceChildren(form);
  input.focus();
}

// Throws URIError on a malformed escape (#/trace/%E0%A4%A): show() says so.
function parseHash() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(2) : "models";
  const [path, query = ""] = hash.split("?", 2);
  const [name, ...rest] = path.split("/");
  return { name: PAGES[name] ? name : "models", arg: rest.map(decodeURIComponent).join("/"), query: new URLSearchParams(query) };
}

let timer = null;
let generation = 0;

async function show() {
  clearTimeout(timer);
  const mine = ++generation;
  const main = document.getElementById("main");
  let route;
  try {
    route = parseHash();
  } catch (e) {
    document.title = "Malformed address · modeltel";
    main.replaceChildren(el("p", { role: "alert" }, `This console address is malformed (${e.message}): ${location.hash}`),
      el("p", {}, el("a", { href: "#/models" }, "All models")));
    return;
  }
  const { name, arg, query } = route;
  const page = PAGES[name];
  document.title = `${page.title} · modeltel`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const status = document.getElementById("console-status");
  const view = el("div", { class: "page", "data-page": name });
  main.replaceChildren(view);
  let refresh;
  try {
    refresh = page.render(view, { arg, query });
  } catch (e) {
    view.replaceChildren(el("p", { role: "alert" }, String(e.message || e)));
    return;
  }
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await refresh();
      if (mine !== generation) return; // a newer page took over while this one was fetching
      status.textContent = `Updated ${clock(Date.now() / 1000)}`;
      main.dataset.ready = "1";
    } catch (e) {
      if (mine !== generation) return;
      if (e instanceof AuthError) { loginForm(main, show); return; }
      status.textContent = `Update failed: ${e.message}`;
    }
    if (page.poll && REFRESH_S > 0 && mine === generation) timer = setTimeout(tick, REFRESH_S * 1000);
  };
  delete main.dataset.ready;
  await tick();
}

function buildNav() {
  const list = document.getElementById("nav");
  for (const [name, page] of Object.entries(PAGES)) {
    if (page.nav) list.append(el("li", {}, el("a", { href: `#/${name}`, "data-page": name }, page.title)));
  }
}

buildNav();
window.addEventListener("hashchange", show);
show();

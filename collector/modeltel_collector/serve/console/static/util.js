// Shared by the console's modules: the bearer token (from ?token= or the sign-in form, kept in
// sessionStorage), the JSON fetcher, and a DOM builder that only ever sets text, never markup.

export const TOKEN_KEY = "modeltel.console.token";
const params = new URLSearchParams(location.search);

// A ?token= on the first load goes to sessionStorage (this tab only) and out of the address bar.
if (params.has("token")) {
  sessionStorage.setItem(TOKEN_KEY, params.get("token"));
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
}

export class AuthError extends Error {}

// GET a collector JSON endpoint with the bearer token, if the user gave one.
export async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new AuthError("the collector wants a bearer token");
  if (!response.ok) {
    const detail = await response.json().then((d) => d.error, () => response.statusText);
    throw new Error(`${response.status}: ${detail}`);
  }
  return response.json();
}

// el("a", {href: "#/x", class: "y"}, "text", child...): attributes via setAttribute, strings as text
// nodes. Untrusted values (model names, span attributes) therefore always render as text.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function route(path, query = {}) {
  const q = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const s = q.toString();
  return `#/${path}${s ? `?${s}` : ""}`;
}


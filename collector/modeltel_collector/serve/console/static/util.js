// Shared by the console's modules: the bearer token (typed into the sign-in form, held in this page's
// memory only), the JSON fetcher, and a DOM builder that only ever sets text, never markup.

// Never in a URL, sessionStorage or a cookie: Chromium writes history, caches and sessionStorage to the
// profile on disk, and a proxy logs URLs. The price: a reload or a new tab asks for the token again.
let token = "";

export function signIn(value) {
  token = value;
}

export class AuthError extends Error {}

// GET a collector JSON endpoint with the bearer token, if the user gave one.
export async function api(path) {
  const headers = { Accept: "application/json" };
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


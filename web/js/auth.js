// Where the page gets its bearer token. The whole page asks one function:
//
//   getToken({ refresh }) -> Promise<string>     (refresh: the last token was rejected)
//
// In dev (AUTH_MODE=dev) devTokenSource() mints a token at POST /api/v1/dev/token for a
// per-browser user id and keeps it in localStorage. In production (AUTH_MODE=jwt) replace
// it with your identity provider, e.g. Cognito through Amplify:
//
//   import { fetchAuthSession } from "aws-amplify/auth";
//   export const getToken = async ({ refresh } = {}) =>
//     (await fetchAuthSession({ forceRefresh: !!refresh })).tokens.accessToken.toString();
//
// (docs/web.md has the details.)

const SKEW_MS = 60_000;

function randomId() {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A token source for AUTH_MODE=dev: one dev user per browser, token cached in storage. */
export function devTokenSource({ baseUrl = "", storage = globalThis.localStorage, key = "rtai.auth" } = {}) {
  let inflight = null;

  function load() {
    try {
      return JSON.parse(storage.getItem(key) || "null") || {};
    } catch {
      return {};
    }
  }

  async function mint(sub) {
    const res = await fetch(`${baseUrl}/api/v1/dev/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ sub }),
    });
    if (!res.ok) throw new Error(`dev token: HTTP ${res.status}`);
    const body = await res.json();
    const saved = {
      sub,
      token: body.access_token,
      expiresAt: Date.now() + Number(body.expires_in || 3600) * 1000,
    };
    storage.setItem(key, JSON.stringify(saved));
    return saved.token;
  }

  return async function getToken({ refresh = false } = {}) {
    const saved = load();
    if (!refresh && saved.token && saved.expiresAt - SKEW_MS > Date.now()) return saved.token;
    if (!inflight) {
      inflight = mint(saved.sub || `web-${randomId()}`).finally(() => {
        inflight = null;
      });
    }
    return inflight;
  };
}

/** The `sub` claim of a JWT (the user id the server sees), or null. Not a verification. */
export function tokenSubject(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="));
    const sub = JSON.parse(json).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

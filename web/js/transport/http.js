// The authenticated HTTP client every other module uses (REST calls, stream creation,
// WebSocket tickets, rooms, realtime client secrets). No DOM.
//
//   const api = new ApiClient({ baseUrl: "", getToken });  // getToken({refresh}) -> JWT
//   const body = await api.request("POST", "/stream/v1/rooms");
//
// One token refresh on a 401; any other failure throws an ApiError (status, code,
// retryAfterS) built from OpenAI's error shape {"error": {"message", "type", "code"}}.

export class ApiError extends Error {
  constructor(status, body, headers) {
    const err = body && typeof body === "object" ? body.error : null;
    super((err && err.message) || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = (err && err.code) || null;
    this.body = body;
    const retryAfter = headers ? Number.parseFloat(headers.get("Retry-After") || "") : NaN;
    this.retryAfterS = Number.isFinite(retryAfter) ? retryAfter : null;
  }
}

/** `path` resolved against `base` ("" = this page's origin); absolute URLs pass through. */
export function joinUrl(base, path) {
  if (/^(https?|wss?):\/\//i.test(path)) return path;
  return `${base.replace(/\/+$/, "")}${path}`;
}

/** An absolute ws:// or wss:// URL for `path` (relative to `base` or to this page). */
export function toWebSocketUrl(base, path) {
  const url = new URL(joinUrl(base, path), globalThis.location ? globalThis.location.href : undefined);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString();
}

export function isOnline() {
  return !(globalThis.navigator && globalThis.navigator.onLine === false);
}

/** Exponential backoff with jitter: attempt 0, 1, 2... -> a delay in ms. */
export function backoffDelay(attempt, { initialMs = 250, maxMs = 8000 } = {}) {
  const base = Math.min(maxMs, initialMs * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

export class ApiClient {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl] origin of the API ("" = same origin)
   * @param {(opts?: {refresh?: boolean}) => Promise<string>} options.getToken bearer token source
   * @param {typeof fetch} [options.fetch]
   */
  constructor({ baseUrl = "", getToken, fetch: fetchImpl } = {}) {
    if (typeof getToken !== "function") throw new TypeError("ApiClient needs getToken()");
    this.baseUrl = baseUrl;
    this.getToken = getToken;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  /** fetch with the bearer token; one token refresh on 401. Throws ApiError. */
  async request(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      const token = await this.getToken({ refresh: attempt > 0 });
      const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const res = await this.fetch(joinUrl(this.baseUrl, path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (res.status === 401 && attempt === 0) continue;
      const text = await res.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        data = { error: { message: text.slice(0, 200) } };
      }
      if (!res.ok) throw new ApiError(res.status, data, res.headers);
      return data;
    }
  }
}

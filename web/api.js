// Calls to the API on the same origin. The access token lives in this module's
// memory only; the refresh token in sessionStorage, so a reload of the tab keeps
// the volunteer signed in while closing the tab forgets it. Nothing the page
// shows is ever parsed as HTML, and the CSP allows no inline script, so no
// listing text can run to read either.

const REFRESH = "spotcheck.refresh";
let access = null;
let refreshing = null;

/** A refused or failed call: `status` 0 means the server could not be reached. */
export class ApiError extends Error {
  constructor(status, code, detail, body = {}, retryAfter = null) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** Whether a call failed for want of a connection. */
export function isOffline(error) {
  return error instanceof ApiError && error.status === 0;
}

async function send(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store", credentials: "omit" };
  if (access) init.headers.authorization = `Bearer ${access}`;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "offline", "no connection");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const retry = Number(response.headers.get("retry-after")) || null;
    throw new ApiError(response.status, json?.code ?? "other", json?.detail ?? "", json ?? {}, retry);
  }
  return json;
}

function keep(pair) {
  access = pair.access_token;
  sessionStorage.setItem(REFRESH, pair.refresh_token);
}

/** Signs in; throws `ApiError` (`invalid_credentials`, `too_many_login_attempts`, …). */
export async function login(username, password) {
  access = null;
  keep(await send("POST", "/v1/auth/login", { username, password }));
}

/** Trades the stored refresh token for a new pair; false when there is none or it is refused. */
export function resume() {
  if (!refreshing) {
    refreshing = (async () => {
      const token = sessionStorage.getItem(REFRESH);
      if (!token) return false;
      try {
        access = null;
        keep(await send("POST", "/v1/auth/refresh", { refresh_token: token }));
        return true;
      } catch (e) {
        if (!isOffline(e)) sessionStorage.removeItem(REFRESH);
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** Forgets both tokens. */
export function signOut() {
  access = null;
  sessionStorage.removeItem(REFRESH);
}

/** An authenticated call; an expired access token is refreshed once. */
export async function api(method, path, body, headers) {
  try {
    return await send(method, path, body, headers);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && (await resume())) {
      return send(method, path, body, headers);
    }
    throw e;
  }
}

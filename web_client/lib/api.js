// The SpatialTwin API client every page uses.
//
// Every refusal the server makes is `{"error": {"code", "message", "detail"}}` with a 4xx
// status; here it becomes an ApiError carrying the same three fields and the HTTP status, so a
// page shows the server's own words. An answer that is not that JSON (a proxy's error page)
// still becomes an ApiError, with code `http_<status>` and the status line as its message.
//
//   const twins = listFrom(await getJson(`${API_ROOT}/twins`), 'twins');
//   const job = await waitForJob(started.links.job, { onProgress: (j) => show(j.progress) });
//
// `errorState(err)` turns any error into the plain {status, code, message, detail} the pages
// expose to tests.

export const API_ROOT = '/api/v1';
export const JOB_POLL_MS = 400;

// The access token every request carries (`Authorization: Bearer …`), if the page has one: a
// brand's or an admin's on the merchandiser page, a mirror's device token on the mirror page.
// Shopper pages carry none and read what a license makes public. Kept in this browser's
// localStorage under TOKEN_KEY by `rememberToken`.
export const TOKEN_KEY = 'spatialtwin.token';
let apiToken = null;

export function setApiToken(token) {
  apiToken = token || null;
}

function storedToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the page works anonymously
  }
}

// Take `?token=` from the address bar into localStorage (and out of the address bar and the
// history: it is a secret), and use the remembered token for every request from now on.
export function rememberToken() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token !== null) {
    try {
      if (token) window.localStorage.setItem(TOKEN_KEY, token);
      else window.localStorage.removeItem(TOKEN_KEY);
    } catch {
      // Not remembered; this visit still uses it.
    }
    url.searchParams.delete('token');
    window.history.replaceState(null, '', url);
  }
  setApiToken(token || storedToken());
  return apiToken;
}

export function authHeaders(headers = {}) {
  return apiToken ? { ...headers, Authorization: `Bearer ${apiToken}` } : headers;
}

export class ApiError extends Error {
  // `status`: the HTTP status, or null when no answer came (network) or a job failed.
  constructor(status, code, message, detail = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

// The ApiError of an answer whose body has already been read (`body`: parsed JSON or null).
export function apiErrorFromBody(status, statusText, body, url) {
  const err = body && body.error;
  if (err && typeof err.message === 'string') {
    return new ApiError(status, err.code ?? null, err.message, err.detail ?? null);
  }
  return new ApiError(status, `http_${status}`, `${status} ${statusText || 'error'} from ${url}`, null);
}

export async function apiErrorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy error page, say): fall back to the HTTP status line.
  }
  return apiErrorFromBody(response.status, response.statusText, body, response.url);
}

// {status, code, message, detail} of any error: an ApiError as the server worded it, anything
// else (a parse failure, a missing WebGL) with its own code or `client_error`.
export function errorState(err) {
  if (err instanceof ApiError) {
    return { status: err.status, code: err.code, message: err.message, detail: err.detail };
  }
  return {
    status: err?.status ?? null,
    code: err?.code ?? 'client_error',
    message: err?.message ?? String(err),
    detail: err?.detail ?? null,
  };
}

async function checked(response) {
  if (!response.ok) throw await apiErrorFrom(response);
  return response;
}

export async function getJson(path) {
  const response = await checked(await fetch(path, { headers: authHeaders({ Accept: 'application/json' }) }));
  return response.json();
}

// A GLB (or another binary) as an ArrayBuffer; a refusal still arrives as JSON.
export async function getBytes(path) {
  const response = await checked(
    await fetch(path, { headers: authHeaders({ Accept: 'model/gltf-binary, application/json' }) }),
  );
  return response.arrayBuffer();
}

export async function postJson(path, payload) {
  const response = await checked(
    await fetch(path, {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify(payload),
    }),
  );
  return response.json();
}

// POST a multipart form with upload progress (0..1) — XMLHttpRequest rather than fetch, since
// only XHR reports it. Resolves to {status, body} for a 2xx answer, rejects with an ApiError.
export function postForm(path, form, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Accept', 'application/json');
    if (apiToken) xhr.setRequestHeader('Authorization', `Bearer ${apiToken}`);
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      let json = null;
      try {
        json = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        // Not JSON: handled below through the status line.
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve({ status: xhr.status, body: json });
      else reject(apiErrorFromBody(xhr.status, xhr.statusText, json, path));
    });
    xhr.addEventListener('error', () => reject(new ApiError(null, 'network_error', 'The server could not be reached; check the connection and try again.')));
    xhr.addEventListener('abort', () => reject(new ApiError(null, 'aborted', 'The upload was cancelled.')));
    xhr.send(form);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll a job (`GET /api/v1/jobs/{id}`) until it is done and return it; `onProgress(job)` sees
// every queued or running state. A failed job rejects with its own error (status null), or with
// `failedMessage` when it carries none.
export async function waitForJob(url, { onProgress = () => {}, pollMs = JOB_POLL_MS, failedMessage = 'The job failed on the server.' } = {}) {
  for (;;) {
    const job = await getJson(url);
    if (job.status === 'done') return job;
    if (job.status === 'failed') {
      const e = job.error ?? {};
      throw new ApiError(null, e.code ?? 'job_failed', e.message ?? failedMessage, e.detail ?? null);
    }
    onProgress(job);
    await sleep(pollMs);
  }
}

// Lists come as {"<name>": [...]}; accept a bare array as well.
export function listFrom(body, key) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body[key])) return body[key];
  return [];
}

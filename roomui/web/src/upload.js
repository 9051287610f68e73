// Resumable uploads over tus 1.0 to the room's tus endpoint
// (TUS_PATH{room}/), with the participant's token. A dropped connection
// is retried with the delays below, resuming from the last byte the
// server kept; an upload left unfinished (a reload, a closed tab) is
// found again by its fingerprint when the same file is chosen for the
// same path, and resumed.
import { Upload } from "tus-js-client";

// The delays between attempts after a failure, in ms; past the last one
// the upload fails and the page says so.
export const RETRY_DELAYS = [0, 1000, 2000, 4000, 8000, 15000, 30000, 30000, 30000];

// The bytes of one PATCH request.
const CHUNK = 8 << 20;

// fingerprint names an upload for resuming: the endpoint (the room),
// the room path and what identifies the file.
function fingerprint(file, options) {
  const m = options.metadata ?? {};
  return Promise.resolve(["roomstore", options.endpoint, m.path, file.size, file.lastModified].join("|"));
}

// statusOf is the HTTP status of a tus error, 0 for none.
export function statusOf(err) {
  try {
    return err?.originalResponse?.getStatus?.() ?? 0;
  } catch {
    return 0;
  }
}

// bodyOf is the one-line body of a tus error's response, if any.
function bodyOf(err) {
  try {
    const b = err?.originalResponse?.getBody?.() ?? "";
    return String(b).split("\n")[0].slice(0, 200);
  } catch {
    return "";
  }
}

// describe turns a failed upload into one line.
export function describe(err, path) {
  const status = statusOf(err);
  const body = bodyOf(err);
  switch (status) {
    case 403:
      return `upload ${path}: not allowed${body ? ` (${body})` : ""}`;
    case 409:
      return `upload ${path}: ${body || "a file or folder is in the way"}`;
    case 413:
      return `upload ${path}: too large${body ? ` (${body})` : ""}`;
    case 507:
      return `upload ${path}: the room's quota is full`;
    case 0:
      return `upload ${path}: the connection failed`;
  }
  return `upload ${path}: ${body || "failed with HTTP " + status}`;
}

// startUpload uploads file to the room path, calling onProgress(sent,
// total), then onDone() or onError(err). It returns the tus Upload (abort
// with upload.abort()).
export function startUpload({ file, endpoint, token, path, overwrite, onProgress, onDone, onError }) {
  const up = new Upload(file, {
    endpoint,
    headers: { Authorization: "Bearer " + token },
    metadata: { path, filename: file.name, filetype: file.type || "application/octet-stream", overwrite: overwrite ? "true" : "false" },
    chunkSize: CHUNK,
    retryDelays: RETRY_DELAYS,
    removeFingerprintOnSuccess: true,
    fingerprint,
    onProgress,
    onSuccess: onDone,
    onError,
    onShouldRetry(err) {
      const s = statusOf(err);
      // A refusal stays a refusal; a lost connection, a server restarting
      // or, once the upload exists, a conflict over the offset (409) is
      // worth another attempt. A 409 at the creation is a file in the way.
      if (s === 409) return Boolean(up.url);
      return s === 0 || s === 423 || s === 429 || s >= 500;
    },
  });
  up.findPreviousUploads()
    .then((previous) => {
      if (previous.length > 0) up.resumeFromPreviousUpload(previous[0]);
      up.start();
    })
    .catch(() => up.start());
  return up;
}

// Votes made without a connection, kept in localStorage per volunteer until
// they can be sent. A vote is only worth sending while its lease holds: the
// server refuses any other, so one whose lease has ended is dropped (and the
// volunteer told) instead.

import { isOffline } from "./api.js";

const key = (user) => `spotcheck.outbox.${user}`;

function load(user) {
  try {
    const list = JSON.parse(localStorage.getItem(key(user)) ?? "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

function store(user, list) {
  if (list.length) localStorage.setItem(key(user), JSON.stringify(list));
  else localStorage.removeItem(key(user));
}

/** Keeps `vote` ({task_id, lease_token, lease_expires_at, verdict, reasons, note}). */
export function enqueue(user, vote) {
  const list = load(user).filter((v) => v.task_id !== vote.task_id);
  list.push(vote);
  store(user, list);
}

/** How many votes wait. */
export function waiting(user) {
  return load(user).length;
}

/**
 * Sends what waits with `post(vote)`: returns `{sent, dropped, kept}` counts.
 * Votes whose lease has ended, or that the server refuses, are dropped; those
 * that still cannot reach it are kept for the next try.
 */
export async function flush(user, post, now = Date.now()) {
  const result = { sent: 0, dropped: 0, kept: 0 };
  const keep = [];
  const seen = new Set();
  for (const vote of load(user)) {
    seen.add(vote.task_id);
    if (Date.parse(vote.lease_expires_at) <= now) {
      result.dropped += 1;
      continue;
    }
    try {
      await post(vote);
      result.sent += 1;
    } catch (e) {
      if (isOffline(e)) {
        keep.push(vote);
        result.kept += 1;
      } else {
        result.dropped += 1;
      }
    }
  }
  // Votes queued while this ran are kept too.
  store(user, [...keep, ...load(user).filter((v) => !seen.has(v.task_id))]);
  return result;
}

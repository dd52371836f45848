// The origin the cache stands in front of (the demo origin locally, the user's API in AWS).

import { appConfig } from "./config.ts";

const { originUrl, originTimeoutMs: timeoutMs } = appConfig;

export interface OriginResponse {
  status: number;
  body: string;
}

async function call(method: string, path: string, body?: string): Promise<OriginResponse> {
  const response = await fetch(`${originUrl}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: response.status, body: await response.text() };
}

export function getProduct(id: string): Promise<OriginResponse> {
  return call("GET", `/products/${encodeURIComponent(id)}`);
}

export function putProduct(id: string, body: string): Promise<OriginResponse> {
  return call("PUT", `/products/${encodeURIComponent(id)}`, body);
}
